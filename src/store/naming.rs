//! File names from country names (`naming = "country"`), made safe.
//!
//! The name comes from the server's `metadata.json`, so it is untrusted:
//! [`sanitize_stem`] keeps Unicode (`Côte d'Ivoire`) but removes everything
//! that could leave the output directory, hide a file or pass for another
//! name. It is NFKC-normalised first, so look-alikes become what they look
//! like (fullwidth `．．／` and the one-dot leader `․` are dots and a slash,
//! then removed as such) and composed and decomposed accents are one name;
//! then every invisible character goes, as Unicode classes them
//! ([`is_invisible`]: controls, formats such as bidi controls and the Arabic
//! letter mark, line and paragraph separators, private-use and unassigned
//! code points, every default-ignorable code point such as the Hangul
//! fillers and tags); separators, `..` and leading dots go; a leading `-`
//! (an option to many tools) becomes `_`; the length is bounded.
//!
//! A safe name may still be another code's: [`candidate_name`] gives the
//! names a code tries, in order (` (CC)` appended after the first, then a
//! counter), and the claims of [`super::claims`] say which of them is free.

use icu_normalizer::ComposingNormalizerBorrowed;

use crate::model::codes::CountryCode;
use crate::model::text::is_invisible;

/// Longest stem kept, in characters (well below the 255-byte name limit
/// even at four bytes a character).
const MAX_STEM_CHARS: usize = 60;

/// A safe file stem for `raw`, or `None` if nothing usable is left.
pub fn sanitize_stem(raw: &str) -> Option<String> {
    let nfkc = ComposingNormalizerBorrowed::new_nfkc();
    let normalized = nfkc.normalize(raw);
    let visible: String = normalized.chars().filter(|c| !is_invisible(*c)).collect();
    // What was around a removed character may compose now (`e`, U+200B,
    // U+0301): normalised again, so that the name is its own stem.
    let visible = if visible.len() == normalized.len() { visible } else { nfkc.normalize(&visible).into_owned() };
    let mut stem: String = visible.chars().map(|c| if c == '/' || c == '\\' { '_' } else { c }).collect();
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

/// The stem of `code`'s file names when its country is `country`: the
/// safe form of `country`, or the code itself when nothing usable is left.
pub fn country_stem(code: CountryCode, country: &str) -> String {
    sanitize_stem(country).unwrap_or_else(|| code.to_string())
}

/// The `n`th file name (counting from 1) that `code` tries for the stem
/// `stem`: `{stem}.gif`, then `{stem} ({CC}).gif`, then `{stem}
/// ({CC}-3).gif`, `{stem} ({CC}-4).gif`, and so on.
pub fn candidate_name(stem: &str, code: CountryCode, n: u64) -> String {
    match n {
        ..=1 => format!("{stem}.gif"),
        2 => format!("{stem} ({code}).gif"),
        n => format!("{stem} ({code}-{n}).gif"),
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
    fn candidates_append_the_code_then_a_counter() {
        let ar = CountryCode::new(b'A', b'R').unwrap();
        let first: Vec<String> = (1..=4).map(|n| candidate_name("Same", ar, n)).collect();
        assert_eq!(first, ["Same.gif", "Same (AR).gif", "Same (AR-3).gif", "Same (AR-4).gif"]);
        assert_eq!(country_stem(ar, "Same (CL)"), "Same (CL)");
        assert_eq!(country_stem(ar, "/"), "_");
        assert_eq!(country_stem(ar, ".."), "AR", "nothing usable: the code");
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
    fn invisible_characters_of_every_kind_go() {
        for (raw, expected) in [
            ("Evil\u{061C}ALM", "EvilALM"),
            ("a\u{180E}b\u{FFF9}c\u{FFFB}d", "abcd"),
            ("tag\u{E0041}\u{E0001}\u{E007F}\u{E0000}s", "tags"),
            ("\u{115F}\u{1160}Han\u{3164}gul\u{FFA0}", "Hangul"),
            ("pri\u{E000}vate\u{F0000}", "private"),
            ("un\u{0378}assigned\u{E0080}", "unassigned"),
            ("blank\u{2800}\u{034F}\u{FE0F}", "blank"),
            ("bidi\u{2066}\u{202E}\u{200F}\u{061C}", "bidi"),
        ] {
            assert_eq!(sanitize_stem(raw).as_deref(), Some(expected), "{raw:?}");
        }
        assert_eq!(sanitize_stem("\u{3164}\u{115F}"), None, "only fillers: nothing usable");
        assert_eq!(sanitize_stem("e\u{200B}\u{0301}").as_deref(), Some("\u{E9}"), "composed once the gap is gone");
    }
}
