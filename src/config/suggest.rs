//! "Did you mean": the known name nearest to a mistyped one by edit distance, for the
//! unknown-key and unknown-value messages.
//!
//! Owns what counts as a plausible typo (`_` and `-` alike, case ignored, a distance
//! of about a third of the name); it never decides whether a name is known.

/// The known name nearest to `name` by edit distance, when it is close enough to be
/// a plausible typo.
pub(super) fn closest<'k>(name: &str, known: &[&'k str]) -> Option<&'k str> {
    let name = name.to_ascii_lowercase().replace('_', "-");
    known
        .iter()
        .map(|k| (edit_distance(&name, &k.replace('_', "-")), *k))
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = Vec::with_capacity(b.len() + 1);
        cur.push(i + 1);
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::super::validate::SLOT_KEYS;
    use super::super::WAL2JSON_OPTIONS;
    use super::*;

    #[test]
    fn closest_finds_typos_but_not_unrelated_words() {
        assert_eq!(closest("hots", SLOT_KEYS), Some("host"));
        assert_eq!(closest("kinesis_stream", SLOT_KEYS), None);
        assert_eq!(closest("kns-stream", SLOT_KEYS), Some("kns_stream"));
        assert_eq!(
            closest("include_timestamp", WAL2JSON_OPTIONS),
            Some("include-timestamp")
        );
        assert_eq!(closest("banana", SLOT_KEYS), None);
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("port", "port"), 0);
        assert_eq!(edit_distance("prot", "port"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("db_nam", "db_name"), 1);
    }
}
