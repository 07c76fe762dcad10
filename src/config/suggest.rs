//! "Did you mean …?": the known word an unknown key or value was probably
//! meant to be. The edit distance is a few lines here rather than a
//! dependency for one function.

/// The number of characters to insert, delete or replace to turn `a` into
/// `b` (the Levenshtein distance).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, from) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, to) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if from == *to { diagonal } else { 1 + diagonal.min(above).min(row[j]) };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `word` without case, `_` or `-`: `Max-Req` and `max_req` fold alike.
fn folded(word: &str) -> String {
    word.chars().filter(|c| *c != '_' && *c != '-').flat_map(char::to_lowercase).collect()
}

/// The candidate `word` was probably meant to be: one that differs only in
/// case, `_` or `-`, else the nearest one at most two edits away (and at
/// most half as many edits as it has characters, so that short words do not
/// match anything). `None` when no candidate is that close.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    let word_folded = folded(word);
    if let Some(same) = candidates.iter().find(|c| folded(c) == word_folded) {
        return Some(same);
    }
    candidates
        .into_iter()
        .map(|candidate| (distance(word, candidate), candidate))
        .filter(|(edits, candidate)| *edits <= 2 && edits * 2 <= candidate.chars().count())
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// Why `key` is refused in a table whose keys are `known`: `unknown key
/// maxreq; did you mean max_req?`, or the keys it takes.
pub fn unknown_key(key: &str, known: &[&str]) -> String {
    match closest(key, known.iter().copied()) {
        Some(meant) => format!("unknown key {key}; did you mean {meant}?"),
        None => format!("unknown key {key}; known keys: {}", known.join(", ")),
    }
}

/// Why `value` is refused where only `accepted` are: `unknown value
/// "Country"; did you mean "country"?`, or the values accepted.
pub fn unknown_value(value: &str, accepted: &[&str]) -> String {
    match closest(value, accepted.iter().copied()) {
        Some(meant) => format!("unknown value {value:?}; did you mean {meant:?}?"),
        None => {
            let quoted: Vec<String> = accepted.iter().map(|a| format!("{a:?}")).collect();
            format!("unknown value {value:?}; expected one of {}", quoted.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_count_edits() {
        assert_eq!(distance("", ""), 0);
        assert_eq!(distance("abc", ""), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("maxreq", "max_req"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("retrys", "retries"), 2);
        assert_eq!(distance("été", "ete"), 2);
    }

    #[test]
    fn close_words_are_suggested_and_far_ones_not() {
        let keys = ["max_req", "output", "verbose", "timeout", "retries"];
        assert_eq!(closest("maxreq", keys), Some("max_req"));
        assert_eq!(closest("MAX-REQ", keys), Some("max_req"));
        assert_eq!(closest("retrys", keys), Some("retries"));
        assert_eq!(closest("timout", keys), Some("timeout"));
        assert_eq!(closest("threads", keys), None);
        assert_eq!(closest("x", keys), None);
        assert_eq!(closest("flag", ["code", "country"]), None);
        assert_eq!(closest("Country", ["code", "country"]), Some("country"));
        assert_eq!(closest("u", ["url"]), None);
        assert_eq!(closest("defaulds", ["servers", "defaults", "daemon"]), Some("defaults"));
    }

    #[test]
    fn unknown_keys_and_values_say_what_was_meant_or_what_is_known() {
        assert_eq!(unknown_key("maxreq", &["max_req", "output"]), "unknown key maxreq; did you mean max_req?");
        assert_eq!(unknown_key("zzz", &["max_req", "output"]), "unknown key zzz; known keys: max_req, output");
        assert_eq!(
            unknown_value("flag", &["code", "country"]),
            "unknown value \"flag\"; expected one of \"code\", \"country\""
        );
        assert_eq!(unknown_value("Code", &["code", "country"]), "unknown value \"Code\"; did you mean \"code\"?");
    }
}
