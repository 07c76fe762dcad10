//! Country codes and the lists flags2 builds from them.
//!
//! A [`CountryCode`] is two upper-case ASCII letters. The command line turns
//! arguments into codes (`"br"` is `BR`, a lone letter `"b"` is `BA`…`BZ`), and
//! the selection rules of flags2 pick the final list: `--every` over `--all`
//! over the explicit codes, the 20 most populous countries when nothing is
//! given, then sorted, de-duplicated and cut by `--limit`.

use std::collections::BTreeSet;
use std::fmt;

/// The 194 codes of the data set, as shipped in `assets/country_codes.txt`.
const COUNTRY_CODES_TXT: &str = include_str!("../../assets/country_codes.txt");

/// The 20 most populous countries: the flags2 default when no code is given.
pub const POP20: [&str; 20] = [
    "CN", "IN", "US", "ID", "BR", "PK", "NG", "BD", "RU", "JP", "MX", "PH", "VN", "ET", "EG", "DE", "IR", "TR", "CD",
    "FR",
];

/// A two-letter country code, always upper case.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// Builds a code from two ASCII letters of any case; `None` for anything else.
    pub fn new(first: u8, second: u8) -> Option<Self> {
        (first.is_ascii_alphabetic() && second.is_ascii_alphabetic())
            .then(|| Self([first.to_ascii_uppercase(), second.to_ascii_uppercase()]))
    }

    /// The code in upper case, as printed and used for file names (`BR`).
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// The code in lower case, as used in URLs (`br`).
    pub fn lower(&self) -> String {
        self.as_str().to_ascii_lowercase()
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command-line code argument that is neither one nor two ASCII letters;
/// the message names it (as [`shown`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{}': each CC argument must be A to Z or AA to ZZ.", shown(.0))]
pub struct BadCodeArgument(pub String);

/// Expands one argument: two letters are one code, one letter `X` is `XA`…`XZ`.
pub fn expand_argument(arg: &str) -> Result<Vec<CountryCode>, BadCodeArgument> {
    let bad = || BadCodeArgument(arg.to_owned());
    match *arg.as_bytes() {
        [first] => {
            let codes: Option<Vec<_>> = (b'A'..=b'Z').map(|second| CountryCode::new(first, second)).collect();
            codes.ok_or_else(bad)
        }
        [_, _] => parse_code(arg).map(|cc| vec![cc]).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// A two-letter word as a code, any case (`None` for anything else).
pub fn parse_code(word: &str) -> Option<CountryCode> {
    match *word.as_bytes() {
        [a, b] => CountryCode::new(a, b),
        _ => None,
    }
}

/// A code list that cannot be read: the origin, line and word are named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{line}: '{word}': each CC argument must be A to Z or AA to ZZ.")]
pub struct BadCodeList {
    /// The file name (`-` for stdin).
    pub origin: String,
    /// Line number, from 1.
    pub line: usize,
    /// The word that is not a code, cut to [`SHOWN_WORD_CHARS`] characters
    /// (with `…`): a file may hold anything.
    pub word: String,
}

/// The longest part of a bad word an error message shows.
pub const SHOWN_WORD_CHARS: usize = 20;

/// `word` as an error message shows it: at most [`SHOWN_WORD_CHARS`]
/// characters, control characters escaped.
fn shown(word: &str) -> String {
    let mut text: String = word.chars().take(SHOWN_WORD_CHARS).flat_map(char::escape_debug).collect();
    if word.chars().nth(SHOWN_WORD_CHARS).is_some() {
        text.push('…');
    }
    text
}

/// Parses a code list (`--codes-file`): codes and single letters as on the
/// command line, separated by white space or commas; `#` starts a comment.
/// `origin` names the list in errors.
pub fn parse_code_list(text: &str, origin: &str) -> Result<Vec<CountryCode>, BadCodeList> {
    let mut codes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or_default();
        for word in content.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()) {
            let expanded = expand_argument(word).map_err(|_| BadCodeList {
                origin: origin.to_owned(),
                line: i + 1,
                word: shown(word),
            })?;
            codes.extend(expanded);
        }
    }
    Ok(codes)
}

/// The 194 codes of the country list (`--all`), sorted.
pub fn all_countries() -> Vec<CountryCode> {
    COUNTRY_CODES_TXT.split_ascii_whitespace().filter_map(parse_code).collect()
}

/// Every code `AA`…`ZZ` (`--every`): 676 codes, most of them not countries.
pub fn every_code() -> Vec<CountryCode> {
    (b'A'..=b'Z').flat_map(|a| (b'A'..=b'Z').filter_map(move |b| CountryCode::new(a, b))).collect()
}

/// The 20 most populous countries ([`POP20`]) as codes.
pub fn pop20() -> Vec<CountryCode> {
    POP20.iter().copied().filter_map(parse_code).collect()
}

/// Which codes a run asks for, before sorting and limiting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// `--every`: all 676 codes.
    Every,
    /// `--all`: the 194 countries.
    All,
    /// Codes and letters given one by one (empty means the POP20 default).
    Explicit(Vec<CountryCode>),
    /// Codes from a list file (`--codes-file`): exactly these, even none.
    Exactly(Vec<CountryCode>),
}

impl Selection {
    /// Applies the flags2 precedence: `every` over `all` over the explicit list.
    pub fn from_flags(every: bool, all: bool, explicit: Vec<CountryCode>) -> Self {
        if every {
            Self::Every
        } else if all {
            Self::All
        } else {
            Self::Explicit(explicit)
        }
    }

    /// The final list: selected codes (POP20 if none), sorted, de-duplicated,
    /// then the first `limit` of them.
    pub fn resolve(&self, limit: Option<usize>) -> Vec<CountryCode> {
        let codes = match self {
            Self::Every => every_code(),
            Self::All => all_countries(),
            Self::Explicit(list) if list.is_empty() => pop20(),
            Self::Explicit(list) | Self::Exactly(list) => list.clone(),
        };
        let sorted: BTreeSet<CountryCode> = codes.into_iter().collect();
        sorted.into_iter().take(limit.unwrap_or(usize::MAX)).collect()
    }
}

/// A set of codes as one bit for each of the 676 codes `AA` to `ZZ`: how a
/// fleet's run record keeps its codes, in 170 hex digits however many there
/// are (`serde`: that hex text).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CodeSet([u64; 11]);

impl CodeSet {
    /// The bit of `code`: `(first - 'A') * 26 + (second - 'A')`.
    fn bit(code: CountryCode) -> usize {
        usize::from(code.0[0] - b'A') * 26 + usize::from(code.0[1] - b'A')
    }

    /// Adds `code`.
    pub fn insert(&mut self, code: CountryCode) {
        let bit = Self::bit(code);
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    /// Whether `code` is in the set.
    pub fn contains(&self, code: CountryCode) -> bool {
        let bit = Self::bit(code);
        self.0[bit / 64] & (1 << (bit % 64)) != 0
    }

    /// How many codes the set holds.
    pub fn len(&self) -> usize {
        self.0.iter().map(|word| word.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|word| *word == 0)
    }

    /// The codes, `AA` first.
    pub fn codes(&self) -> Vec<CountryCode> {
        (b'A'..=b'Z')
            .flat_map(|first| (b'A'..=b'Z').filter_map(move |second| CountryCode::new(first, second)))
            .filter(|code| self.contains(*code))
            .collect()
    }

    /// The set as 170 lower-case hex digits (bit 0 of the first word last).
    pub fn to_hex(&self) -> String {
        self.0.iter().rev().map(|word| format!("{word:016x}")).collect::<String>()[6..].to_owned()
    }

    /// The set that [`to_hex`](Self::to_hex) wrote, or `None`.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 170 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let full = format!("000000{text}");
        let mut words = [0u64; 11];
        for (i, word) in words.iter_mut().rev().enumerate() {
            *word = u64::from_str_radix(&full[i * 16..(i + 1) * 16], 16).ok()?;
        }
        // 676 bits: the last word holds 36.
        (words[10] >> 36 == 0).then_some(Self(words))
    }
}

impl FromIterator<CountryCode> for CodeSet {
    fn from_iter<I: IntoIterator<Item = CountryCode>>(codes: I) -> Self {
        let mut set = Self::default();
        for code in codes {
            set.insert(code);
        }
        set
    }
}

impl fmt::Debug for CodeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.codes()).finish()
    }
}

impl serde::Serialize for CodeSet {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for CodeSet {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::from_hex(&text).ok_or_else(|| serde::de::Error::custom("not a set of codes (170 hex digits)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(codes: &[CountryCode]) -> Vec<&str> {
        codes.iter().map(CountryCode::as_str).collect()
    }

    #[test]
    fn parse_code_are_one_code_in_upper_case() {
        assert_eq!(strs(&expand_argument("br").unwrap()), ["BR"]);
        assert_eq!(strs(&expand_argument("Br").unwrap()), ["BR"]);
    }

    #[test]
    fn one_letter_expands_to_26_codes() {
        let codes = expand_argument("x").unwrap();
        assert_eq!(codes.len(), 26);
        assert_eq!(codes[0].as_str(), "XA");
        assert_eq!(codes[25].as_str(), "XZ");
    }

    #[test]
    fn anything_else_is_rejected() {
        for bad in ["", "ABC", "1", "a1", "é", "-", "b r"] {
            assert_eq!(expand_argument(bad), Err(BadCodeArgument(bad.to_owned())), "{bad:?}");
        }
        let long = expand_argument("\u{1b}[31mBRAZIL-AND-MORE-THAN-TWENTY").unwrap_err().to_string();
        assert_eq!(long, "'\\u{1b}[31mBRAZIL-AND-MORE…': each CC argument must be A to Z or AA to ZZ.");
    }

    #[test]
    fn country_list_has_194_sorted_codes() {
        let codes = all_countries();
        assert_eq!(codes.len(), 194);
        assert_eq!(codes.first().map(CountryCode::as_str), Some("AD"));
        assert_eq!(codes.last().map(CountryCode::as_str), Some("ZW"));
        assert!(codes.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn every_is_676_codes_from_aa_to_zz() {
        let codes = every_code();
        assert_eq!(codes.len(), 676);
        assert_eq!(codes[0].as_str(), "AA");
        assert_eq!(codes[675].as_str(), "ZZ");
    }

    #[test]
    fn precedence_is_every_then_all_then_explicit() {
        let br = expand_argument("BR").unwrap();
        assert_eq!(Selection::from_flags(true, true, br.clone()), Selection::Every);
        assert_eq!(Selection::from_flags(false, true, br.clone()), Selection::All);
        assert_eq!(Selection::from_flags(false, false, br.clone()), Selection::Explicit(br));
    }

    #[test]
    fn empty_selection_defaults_to_pop20_sorted() {
        let codes = Selection::Explicit(vec![]).resolve(None);
        assert_eq!(codes.len(), 20);
        assert_eq!(
            strs(&codes),
            [
                "BD", "BR", "CD", "CN", "DE", "EG", "ET", "FR", "ID", "IN", "IR", "JP", "MX", "NG", "PH", "PK", "RU",
                "TR", "US", "VN"
            ]
        );
    }

    #[test]
    fn code_lists_take_words_letters_and_comments() {
        let list = "# failed codes\nbr\nAR, cl  x # the X codes\n\n";
        let codes = parse_code_list(list, "failed.txt").unwrap();
        assert_eq!(codes.len(), 29);
        assert_eq!(strs(&codes[..3]), ["BR", "AR", "CL"]);
        assert_eq!(parse_code_list("", "-").unwrap(), vec![]);
        assert_eq!(Selection::Exactly(vec![]).resolve(None), vec![]);
        let err = parse_code_list("BR\nAR BRA\n", "list.txt").unwrap_err();
        assert_eq!(err.to_string(), "list.txt:2: 'BRA': each CC argument must be A to Z or AA to ZZ.");
        let long = format!("{}\u{0}", "é".repeat(30));
        let err = parse_code_list(&long, "list.txt").unwrap_err();
        assert_eq!(err.word, format!("{}…", "é".repeat(20)));
        let err = parse_code_list("ab\u{0}\u{1b}", "list.txt").unwrap_err();
        assert_eq!(err.word, "ab\\0\\u{1b}");
    }

    #[test]
    fn explicit_codes_are_sorted_deduplicated_and_limited() {
        let mut list = expand_argument("ZW").unwrap();
        list.extend(expand_argument("b").unwrap());
        list.extend(expand_argument("br").unwrap());
        let codes = Selection::Explicit(list.clone()).resolve(None);
        assert_eq!(codes.len(), 27);
        assert_eq!(codes[0].as_str(), "BA");
        assert_eq!(codes[26].as_str(), "ZW");
        assert_eq!(strs(&Selection::Explicit(list).resolve(Some(3))), ["BA", "BB", "BC"]);
    }

    #[test]
    fn a_code_set_holds_any_codes_in_170_hex_digits() {
        let codes: CodeSet = ["AA", "BR", "ZZ", "ZY"].iter().filter_map(|c| parse_code(c)).collect();
        assert_eq!((codes.len(), codes.is_empty()), (4, false));
        assert!(codes.contains(parse_code("BR").unwrap()) && !codes.contains(parse_code("AR").unwrap()));
        let hex = codes.to_hex();
        assert_eq!(hex.len(), 170);
        let back = CodeSet::from_hex(&hex).unwrap();
        assert_eq!(back, codes);
        assert_eq!(back.codes().iter().map(CountryCode::as_str).collect::<Vec<_>>(), ["AA", "BR", "ZY", "ZZ"]);
        let every: CodeSet = expand_argument("a").unwrap().into_iter().collect();
        assert_eq!(every.len(), 26);
        assert_eq!(serde_json::from_str::<CodeSet>(&serde_json::to_string(&codes).unwrap()).unwrap(), codes);
        assert!(CodeSet::from_hex("zz").is_none());
        assert!(CodeSet::from_hex(&"f".repeat(170)).is_none(), "bits past ZZ");
        assert!(CodeSet::default().is_empty());
    }
}
