//! File names from country names (`naming = "country"`), made safe.
//!
//! The name comes from the server's `metadata.json`, so it is untrusted:
//! [`sanitize_stem`] keeps Unicode (`Côte d'Ivoire`) but removes everything
//! that could leave the output directory, hide a file or pass for another
//! name. It is NFKC-normalised first, so look-alikes become what they look
//! like (fullwidth `．．／` and the one-dot leader `․` are dots and a slash,
//! then removed as such) and composed and decomposed accents are one name;
//! separators, `..`, leading dots, control, line-separator and invisible
//! formatting characters go; a leading `-` (an option to many tools)
//! becomes `_`; the length is bounded. A [`NameRegistry`] gives each code
//! its own name, comparing names case-insensitively (so `France` and
//! `FRANCE` cannot share a file on a case-insensitive file system): when
//! two codes claim the same name, the later one gets ` (CC)` appended
//! instead of overwriting the first.

use std::collections::HashMap;

use icu_normalizer::ComposingNormalizerBorrowed;

use crate::model::codes::CountryCode;

/// Longest stem kept, in characters (well below the 255-byte name limit
/// even at four bytes a character).
const MAX_STEM_CHARS: usize = 60;

/// Invisible formatting characters that can disguise a name: bidi
/// overrides and isolates (`U+202E` turns `gif.exe` around), zero-width
/// characters, the soft hyphen and the byte-order mark; and the line and
/// paragraph separators, which break a listing's lines.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}'
    )
}

/// A safe file stem for `raw`, or `None` if nothing usable is left.
pub fn sanitize_stem(raw: &str) -> Option<String> {
    let normalized = ComposingNormalizerBorrowed::new_nfkc().normalize(raw);
    let mut stem: String = normalized
        .chars()
        .filter(|c| !c.is_control() && !is_invisible_format(*c))
        .map(|c| if c == '/' || c == '\\' { '_' } else { c })
        .collect();
    while stem.contains("..") {
        stem = stem.replace("..", ".");
    }
    let trim = |s: &str| s.trim_matches(|c: char| c == '.' || c.is_whitespace()).to_owned();
    let stem: String = trim(&stem).chars().take(MAX_STEM_CHARS).collect();
    let mut stem = trim(&stem);
    if stem.starts_with('-') {
        stem.replace_range(..1, "_");
    }
    (!stem.is_empty()).then_some(stem)
}

/// The key names are compared by: two names with the same key would be
/// one file on a case-insensitive file system.
fn fold(name: &str) -> String {
    name.to_lowercase()
}

/// The file names given out, so that no two codes share one.
#[derive(Debug, Default)]
pub struct NameRegistry {
    /// Name and owner, by [`fold`]ed name.
    taken: HashMap<String, (String, CountryCode)>,
}

impl NameRegistry {
    /// Reserves the file name `name` for `code` (the file an earlier run
    /// saved for it), so that no other code of this run takes it.
    pub fn reserve(&mut self, code: CountryCode, name: &str) {
        self.taken.entry(fold(name)).or_insert_with(|| (name.to_owned(), code));
    }

    /// Gives up `code`'s claim on `name` (its file is gone).
    pub fn release(&mut self, code: CountryCode, name: &str) {
        let key = fold(name);
        if self.taken.get(&key).is_some_and(|(_, owner)| *owner == code) {
            self.taken.remove(&key);
        }
    }

    /// The file name (`{stem}.gif`) for `code`, whose country is `country`.
    /// Falls back to `{CC}.gif` when the country name has nothing usable.
    pub fn claim(&mut self, code: CountryCode, country: &str) -> String {
        let stem = sanitize_stem(country).unwrap_or_else(|| code.to_string());
        let mut name = format!("{stem}.gif");
        let mut n = 1;
        while self.taken.get(&fold(&name)).is_some_and(|(_, owner)| *owner != code) {
            n += 1;
            name = if n == 2 { format!("{stem} ({code}).gif") } else { format!("{stem} ({code}-{n}).gif") };
        }
        self.taken.insert(fold(&name), (name.clone(), code));
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
    fn look_alikes_separators_and_dashes_are_defused() {
        assert_eq!(sanitize_stem("\u{2024}\u{2024}/etc").as_deref(), Some("_etc"), "one-dot leaders");
        assert_eq!(sanitize_stem("\u{FF0E}\u{FF0E}\u{FF0F}x").as_deref(), Some("_x"), "fullwidth ../");
        assert_eq!(sanitize_stem("a\u{2028}b\u{2029}c\u{0085}d").as_deref(), Some("abcd"));
        assert_eq!(sanitize_stem("-rf").as_deref(), Some("_rf"));
        assert_eq!(sanitize_stem("--help").as_deref(), Some("_-help"));
        let (nfc, nfd) = ("C\u{00F4}te", "Co\u{0302}te");
        assert_eq!(sanitize_stem(nfc), sanitize_stem(nfd), "one name, however composed");
    }

    #[test]
    fn names_differing_in_case_only_do_not_share_a_file() {
        let fr = CountryCode::new(b'F', b'R').unwrap();
        let fx = CountryCode::new(b'F', b'X').unwrap();
        let mut names = NameRegistry::default();
        assert_eq!(names.claim(fr, "France"), "France.gif");
        assert_eq!(names.claim(fx, "FRANCE"), "FRANCE (FX).gif");
        names.release(fx, "FRANCE (FX).gif");
        names.release(fx, "France.gif");
        assert_eq!(names.claim(fx, "FRANCE"), "FRANCE (FX).gif", "FX cannot release FR's name");
        names.release(fr, "France.gif");
        assert_eq!(names.claim(fx, "france"), "france.gif");
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
