//! File names from country names (`naming = "country"`), made safe.
//!
//! The name comes from the server's `metadata.json`, so it is untrusted:
//! [`sanitize_stem`] keeps Unicode (`Côte d'Ivoire`) but removes everything
//! that could leave the output directory or hide a file (separators, `..`,
//! leading dots, control characters) and bounds the length. A
//! [`NameRegistry`] gives each code of a run its own name: when two codes
//! claim the same name, the later one gets ` (CC)` appended instead of
//! overwriting the first.

use std::collections::HashMap;

use crate::model::codes::CountryCode;

/// Longest stem kept, in characters (well below the 255-byte name limit
/// even at four bytes a character).
const MAX_STEM_CHARS: usize = 60;

/// Invisible formatting characters that can disguise a name: bidi
/// overrides and isolates (`U+202E` turns `gif.exe` around), zero-width
/// characters, the soft hyphen and the byte-order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

/// A safe file stem for `raw`, or `None` if nothing usable is left.
pub fn sanitize_stem(raw: &str) -> Option<String> {
    let mut stem: String = raw
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    while stem.contains("..") {
        stem = stem.replace("..", ".");
    }
    let trim = |s: &str| s.trim_matches(|c: char| c == '.' || c.is_whitespace()).to_owned();
    let stem: String = trim(&stem).chars().take(MAX_STEM_CHARS).collect();
    let stem = trim(&stem);
    (!stem.is_empty()).then_some(stem)
}

/// The file names given out in one run, so that no two codes share one.
#[derive(Debug, Default)]
pub struct NameRegistry {
    taken: HashMap<String, CountryCode>,
}

impl NameRegistry {
    /// Reserves the file name `name` for `code` (the file an earlier run
    /// saved for it), so that no other code of this run takes it.
    pub fn reserve(&mut self, code: CountryCode, name: &str) {
        self.taken.entry(name.to_owned()).or_insert(code);
    }

    /// The file name (`{stem}.gif`) for `code`, whose country is `country`.
    /// Falls back to `{CC}.gif` when the country name has nothing usable.
    pub fn claim(&mut self, code: CountryCode, country: &str) -> String {
        let stem = sanitize_stem(country).unwrap_or_else(|| code.to_string());
        let mut name = format!("{stem}.gif");
        let mut n = 1;
        while self.taken.get(&name).is_some_and(|owner| *owner != code) {
            n += 1;
            name = if n == 2 { format!("{stem} ({code}).gif") } else { format!("{stem} ({code}-{n}).gif") };
        }
        self.taken.insert(name.clone(), code);
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicode_is_kept() {
        assert_eq!(sanitize_stem("Côte d'Ivoire").as_deref(), Some("Côte d'Ivoire"));
    }

    #[test]
    fn hostile_names_stay_inside_the_directory() {
        assert_eq!(sanitize_stem("../../etc/x").as_deref(), Some("_._etc_x"));
        assert_eq!(sanitize_stem("/abs/path").as_deref(), Some("_abs_path"));
        assert_eq!(sanitize_stem("..").as_deref(), None);
        assert_eq!(sanitize_stem(".hidden").as_deref(), Some("hidden"));
        assert_eq!(sanitize_stem("a\u{0}b\nc\u{1b}[31m").as_deref(), Some("abc[31m"));
        assert_eq!(sanitize_stem("C:\\win").as_deref(), Some("C:_win"));
        assert_eq!(sanitize_stem("Evil\u{202E}fig.exe\u{200B}").as_deref(), Some("Evilfig.exe"));
        assert_eq!(sanitize_stem(" \t ").as_deref(), None);
        let long = "é".repeat(500);
        assert_eq!(sanitize_stem(&long).map(|s| s.chars().count()), Some(MAX_STEM_CHARS));
        for raw in ["../../etc/x", "/abs", "a/../../b", "....//....//x"] {
            let stem = sanitize_stem(raw).unwrap();
            assert!(!stem.contains('/') && !stem.contains("..") && !stem.starts_with('.'), "{raw} -> {stem}");
        }
    }

    #[test]
    fn collisions_get_the_code_appended() {
        let br = CountryCode::new(b'B', b'R').unwrap();
        let ar = CountryCode::new(b'A', b'R').unwrap();
        let cl = CountryCode::new(b'C', b'L').unwrap();
        let mut names = NameRegistry::default();
        assert_eq!(names.claim(br, "Same"), "Same.gif");
        assert_eq!(names.claim(ar, "Same"), "Same (AR).gif");
        assert_eq!(names.claim(br, "Same"), "Same.gif");
        assert_eq!(names.claim(cl, "Same (AR)"), "Same (AR) (CL).gif");
        assert_eq!(names.claim(cl, "/"), "_.gif");
        assert_eq!(names.claim(ar, ".."), "AR.gif");
    }

    #[test]
    fn reserved_names_stay_with_their_code() {
        let aa = CountryCode::new(b'A', b'A').unwrap();
        let bb = CountryCode::new(b'B', b'B').unwrap();
        let mut names = NameRegistry::default();
        names.reserve(aa, "Foo.gif");
        assert_eq!(names.claim(bb, "Foo"), "Foo (BB).gif");
        assert_eq!(names.claim(aa, "Foo"), "Foo.gif");
    }
}
