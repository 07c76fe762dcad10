//! Walking an error's chain of causes, which is how reqwest, hyper and h2
//! say what went wrong: a leaf of `http`, so that any of its files can use it.

/// The first error of type `T` among `error` and its causes.
pub fn find_source<'a, T: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

/// The message of the deepest cause of `error`.
pub fn innermost_message(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current = error;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
