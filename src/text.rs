//! Helpers for messages: the name a user most likely meant when they mistyped one.

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
