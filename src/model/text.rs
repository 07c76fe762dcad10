//! Text from outside (a server's reason phrase, a fleet message, a proxy's
//! answer) made safe to print on a terminal, and the one test of what is
//! invisible that file names share.
//!
//! A terminal obeys what it prints: an escape sequence can move the cursor,
//! rewrite earlier lines or set the window title, a carriage return can
//! hide what came before it, and a bidi override can turn a line around.
//! [`terminal_safe`] keeps printable text as it is and writes every other
//! character as an escape (`\x1b`, `\u{202e}`), so that what was sent stays
//! visible without being obeyed, and caps the length.
//!
//! What counts as invisible is Unicode's, not a list kept by hand
//! ([`is_invisible`]): the general categories of controls (Cc), formats
//! (Cf: bidi controls, zero-width characters, tags, the Arabic letter mark
//! U+061C, the Mongolian vowel separator U+180E, interlinear annotations
//! U+FFF9…), line and paragraph separators (Zl, Zp), private use (Co),
//! surrogates (Cs) and unassigned code points (Cn), and every
//! Default_Ignorable_Code_Point (the Hangul fillers U+115F, U+1160, U+3164
//! and U+FFA0, variation selectors, the combining grapheme joiner), plus
//! the one blank that Unicode calls a symbol, U+2800 BRAILLE PATTERN BLANK.

use std::fmt::Write as _;

use icu_properties::props::{DefaultIgnorableCodePoint, GeneralCategory};
use icu_properties::{CodePointMapData, CodePointSetData};

/// Whether `c` shows nothing, or acts on the text around it instead of
/// showing: see the module documentation for the exact set.
pub fn is_invisible(c: char) -> bool {
    use GeneralCategory::*;
    let category = CodePointMapData::<GeneralCategory>::new().get(c);
    matches!(category, Control | Format | LineSeparator | ParagraphSeparator | PrivateUse | Surrogate | Unassigned)
        || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
        || c == '\u{2800}'
}

/// `text` with every invisible character ([`is_invisible`]: controls,
/// formats, separators, …) written as an escape, and at most `max_chars`
/// characters of the result (an ellipsis marks a cut).
pub fn terminal_safe(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = 0;
    for c in text.chars() {
        let before = out.len();
        if c.is_control() && (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else if is_invisible(c) {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
        chars += out[before..].chars().count();
        if chars > max_chars {
            out.truncate(before);
            out.push('…');
            break;
        }
    }
    out
}

/// `text` cut to at most `max_bytes` bytes and an ellipsis, at a character
/// boundary: for what a server sends that flagsd keeps or quotes (a reason
/// phrase, a status line, a redirect's target), cut where it is read.
pub fn capped(text: &str, max_bytes: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max_bytes {
        return text.into();
    }
    let end = (0..=max_bytes).rev().find(|i| text.is_char_boundary(*i)).unwrap_or(0);
    format!("{}…", &text[..end]).into()
}

/// The most characters of one line of a message [`terminal_safe_lines`]
/// shows, and of one logged value: far more than any message of flagsd's
/// own needs, little enough that a hostile one cannot flood a terminal.
pub const MAX_LINE_CHARS: usize = 4096;

/// `text` made safe as [`terminal_safe`] does, line by line: the line
/// breaks of a message of several lines (a configuration's problems) are
/// kept, and each line is cut at [`MAX_LINE_CHARS`].
pub fn terminal_safe_lines(text: &str) -> String {
    text.split('\n').map(|line| terminal_safe(line, MAX_LINE_CHARS)).collect::<Vec<_>>().join("\n")
}

/// `text` made safe as [`terminal_safe`] does, cut at [`MAX_LINE_CHARS`]:
/// the escape of the human log format and the journal.
pub fn log_safe(text: &str) -> String {
    terminal_safe(text, MAX_LINE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_are_escaped_and_text_kept() {
        assert_eq!(terminal_safe("Not Found", 80), "Not Found");
        assert_eq!(terminal_safe("Côte d'Ivoire", 80), "Côte d'Ivoire");
        assert_eq!(terminal_safe("a\x1b[2Jb\rc\x07", 80), "a\\x1b[2Jb\\x0dc\\x07");
        assert_eq!(terminal_safe("gif\u{202e}exe", 80), "gif\\u{202e}exe");
        assert_eq!(terminal_safe("x\u{9b}31m\u{e0041}", 80), "x\\x9b31m\\u{e0041}");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(terminal_safe("abcdef", 4), "abcd…");
        assert_eq!(terminal_safe("abcd", 4), "abcd");
        // An escape is never cut in half.
        assert_eq!(terminal_safe("ab\x1b", 4), "ab…");
        assert_eq!(terminal_safe_lines("a\rb\nc\x07"), "a\\x0db\nc\\x07");
        assert_eq!(capped("abc", 3), "abc");
        assert_eq!(capped("abcd", 3), "abc…");
        assert_eq!(capped("éé", 3), "é…");
        assert_eq!(log_safe(&"x".repeat(5000)).chars().count(), MAX_LINE_CHARS + 1);
    }
}
