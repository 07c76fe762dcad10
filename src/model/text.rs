//! Text from outside (a server's reason phrase, a fleet message, a proxy's
//! answer) made safe to print on a terminal.
//!
//! A terminal obeys what it prints: an escape sequence can move the cursor,
//! rewrite earlier lines or set the window title, a carriage return can
//! hide what came before it, and a bidi override can turn a line around.
//! [`terminal_safe`] keeps printable text as it is and writes every other
//! character as an escape (`\x1b`, `\u{202e}`), so that what was sent stays
//! visible without being obeyed, and caps the length.

use std::fmt::Write as _;

/// Invisible formatting characters (Unicode's `Cf` category, and the line
/// and paragraph separators): bidi controls, zero-width characters, soft
/// hyphens, interlinear annotations, tags.
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{0600}'..='\u{0605}'
            | '\u{061C}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0001}'
            | '\u{E0020}'..='\u{E007F}'
    )
}

/// `text` with every control and invisible formatting character written as
/// an escape, and at most `max_chars` characters of the result (an
/// ellipsis marks a cut).
pub fn terminal_safe(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars * 4));
    let mut chars = 0;
    for c in text.chars() {
        let before = out.len();
        if c.is_control() && (c as u32) < 0x100 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else if c.is_control() || is_format(c) {
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
    }
}
