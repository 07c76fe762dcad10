//! The flag data set, embedded in the binary at build time (see `build.rs`).
//!
//! Paths are relative to `assets/`: `flags/{cc}/{cc}.gif` and
//! `flags/{cc}/metadata.json` for the 194 countries, `cc` lower case.

include!(concat!(env!("OUT_DIR"), "/dataset.rs"));

/// The embedded file at `path` (for example `flags/br/br.gif`).
pub fn get(path: &str) -> Option<&'static [u8]> {
    FILES.binary_search_by(|(p, _)| p.cmp(&path)).ok().map(|i| FILES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_gif_and_metadata_for_each_of_the_194_countries() {
        let gifs = FILES.iter().filter(|(p, _)| p.ends_with(".gif")).count();
        let metas = FILES.iter().filter(|(p, _)| p.ends_with("/metadata.json")).count();
        assert_eq!((gifs, metas), (194, 194));
        for cc in crate::model::codes::all_countries() {
            let cc = cc.lower();
            let gif = get(&format!("flags/{cc}/{cc}.gif")).unwrap();
            assert!(gif.starts_with(b"GIF8"), "{cc}");
        }
        assert!(get("flags/zz/zz.gif").is_none());
    }
}
