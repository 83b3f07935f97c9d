//! Helpers for messages: the name a user most likely meant when they mistyped one, and text
//! from a file made safe for a one-line message.

/// The name of `names` nearest to `word` (case ignored), if one is at most two edits away
/// (characters inserted, removed or replaced). Ties go to the first.
pub fn nearest<'a>(word: &str, names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word = word.to_lowercase();
    names
        .into_iter()
        .map(|name| (edit_distance(&word, &name.to_lowercase()), name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// Levenshtein distance between two words.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let replaced = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = replaced.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// Makes file-controlled text safe for a one-line message: control
/// characters are escaped and very long text is cut.
#[deny(clippy::indexing_slicing)]
pub fn printable(s: &str) -> String {
    const MAX_CHARS: usize = 120;
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX_CHARS {
            out.push_str("...");
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// `s` with its control characters escaped (`\n` → `\\n`): text from a file kept on one line
/// of a message, whole.
pub fn one_line(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_names() {
        let names = [
            "classify",
            "timeline",
            "PPTSMv2_k400_8f",
            "PPTSMv2_k400_16f",
        ];
        assert_eq!(nearest("clasify", names), Some("classify"));
        assert_eq!(nearest("pptsmv2_k400_8", names), Some("PPTSMv2_k400_8f"));
        assert_eq!(nearest("PPTSMv2_k400_16", names), Some("PPTSMv2_k400_16f"));
        assert_eq!(nearest("banana", names), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
