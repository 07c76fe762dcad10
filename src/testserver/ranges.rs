//! Byte ranges (RFC 9110 §14): what part of a file a `Range` header asks
//! for, so that a client can resume a download (`curl -C -`, `wget2 -c`).
//!
//! One range is served as `206 Partial Content`; a range that starts past
//! the end is `416 Range Not Satisfiable`. Several ranges, other units and
//! malformed headers are ignored (the whole file, `200`), which the RFC
//! allows.

/// What a `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    /// The whole file (no header, or one that is ignored).
    Whole,
    /// Bytes `first..=last`.
    Part {
        /// First byte.
        first: u64,
        /// Last byte, included.
        last: u64,
    },
    /// Nothing of the file can be served.
    Unsatisfiable,
}

/// The range `header` asks of a file of `len` bytes: `bytes=A-B`, `bytes=A-`
/// or `bytes=-N` (the last `N` bytes).
pub fn range_of(header: Option<&str>, len: u64) -> Range {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else { return Range::Whole };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return Range::Whole };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), number(first), number(last)) {
        // The last N bytes.
        (true, _, Some(0)) => Range::Unsatisfiable,
        (true, _, Some(_)) if len == 0 => Range::Unsatisfiable,
        (true, _, Some(n)) => Range::Part { first: len.saturating_sub(n), last: len - 1 },
        (false, Some(first), _) if first >= len => Range::Unsatisfiable,
        (false, Some(first), None) if last.trim().is_empty() => Range::Part { first, last: len - 1 },
        (false, Some(first), Some(last)) if last >= first => Range::Part { first, last: last.min(len - 1) },
        _ => Range::Whole,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_served_and_the_rest_ignored() {
        assert_eq!(range_of(None, 10), Range::Whole);
        assert_eq!(range_of(Some("bytes=0-3"), 10), Range::Part { first: 0, last: 3 });
        assert_eq!(range_of(Some("bytes=4-"), 10), Range::Part { first: 4, last: 9 });
        assert_eq!(range_of(Some("bytes=-3"), 10), Range::Part { first: 7, last: 9 });
        assert_eq!(range_of(Some("bytes=-30"), 10), Range::Part { first: 0, last: 9 });
        assert_eq!(range_of(Some("bytes=5-100"), 10), Range::Part { first: 5, last: 9 });
        assert_eq!(range_of(Some("bytes=10-"), 10), Range::Unsatisfiable);
        assert_eq!(range_of(Some("bytes=-0"), 10), Range::Unsatisfiable);
        assert_eq!(range_of(Some("bytes=0-"), 0), Range::Unsatisfiable);
        assert_eq!(range_of(Some("bytes=-5"), 0), Range::Unsatisfiable);
        for ignored in ["bytes=0-1,3-4", "items=0-1", "bytes=5-2", "bytes=x-", "bytes=", "bytes=-"] {
            assert_eq!(range_of(Some(ignored), 10), Range::Whole, "{ignored}");
        }
    }
}
