//! Delivery verifier: compares the ground truth (what PostgreSQL committed, in commit
//! order) with what a stream holds, and counts lost records, duplicates and per-key
//! order violations. Generic over the record type, so it checks kinesalite reads, stub
//! captures and parsed JSON alike.
//!
//! Must never decide pass/fail on its own terms: it counts, and the test states which
//! guarantee it expects (at-least-once allows duplicates, never loss or reordering).

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;

/// How many problems of each kind to quote in the verdict.
const MAX_EXAMPLES: usize = 10;

/// The outcome of [`verify`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Records in the ground truth.
    pub committed: usize,
    /// Ground-truth records delivered at least once.
    pub delivered: usize,
    /// Ground-truth records never delivered.
    pub lost: usize,
    /// Deliveries beyond the first of the same record.
    pub duplicates: usize,
    /// First deliveries that came after a later-committed record of the same key.
    /// A re-delivery (duplicate) of an older record is not counted: at-least-once
    /// retries legitimately replay a prefix.
    pub order_violations: usize,
    /// Delivered records that are not in the ground truth.
    pub unexpected: usize,
    /// Records the extractor could not read a (key, id) from.
    pub unparsable: usize,
    /// The first few problems, human readable.
    pub examples: Vec<String>,
}

impl Verdict {
    /// Nothing lost, reordered, unknown or unreadable; duplicates allowed.
    pub fn is_at_least_once_in_order(&self) -> bool {
        self.lost == 0 && self.order_violations == 0 && self.unexpected == 0 && self.unparsable == 0
    }

    pub fn is_exactly_once_in_order(&self) -> bool {
        self.is_at_least_once_in_order() && self.duplicates == 0
    }

    /// Panics with the full verdict unless delivery was at-least-once in per-key order.
    #[track_caller]
    pub fn assert_at_least_once_in_order(&self) {
        assert!(
            self.is_at_least_once_in_order(),
            "delivery broke at-least-once/per-key order: {self}"
        );
    }

    #[track_caller]
    pub fn assert_exactly_once_in_order(&self) {
        assert!(
            self.is_exactly_once_in_order(),
            "delivery was not exactly-once in order: {self}"
        );
    }

    fn example(&mut self, text: impl FnOnce() -> String) {
        if self.examples.len() < MAX_EXAMPLES {
            self.examples.push(text());
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "committed={} delivered={} lost={} duplicates={} order_violations={} unexpected={} unparsable={}",
            self.committed,
            self.delivered,
            self.lost,
            self.duplicates,
            self.order_violations,
            self.unexpected,
            self.unparsable
        )?;
        for e in &self.examples {
            write!(f, "\n  - {e}")?;
        }
        Ok(())
    }
}

/// Checks `records` (in per-shard read order, as [`super::read_all`] returns them)
/// against `expected`: every committed `(key, id)` in commit order. `extract` maps a
/// record to its `(key, id)` — the partition key, or table + primary key, and a
/// monotonically increasing payload id — or `None` if the record is unreadable.
///
/// Panics if `expected` lists the same `(key, id)` twice: that is a bug in the test.
pub fn verify<T, K>(
    expected: &[(K, u64)],
    records: &[T],
    extract: impl Fn(&T) -> Option<(K, u64)>,
) -> Verdict
where
    K: Eq + Hash + Clone + fmt::Debug,
{
    let mut commit_pos: HashMap<(K, u64), usize> = HashMap::with_capacity(expected.len());
    for (pos, (key, id)) in expected.iter().enumerate() {
        let previous = commit_pos.insert((key.clone(), *id), pos);
        assert!(
            previous.is_none(),
            "ground truth lists ({key:?}, {id}) twice"
        );
    }
    let mut verdict = Verdict {
        committed: expected.len(),
        ..Verdict::default()
    };
    let mut seen: HashMap<(K, u64), usize> = HashMap::with_capacity(expected.len());
    // Per key: commit position and id of the latest-committed record delivered so far.
    let mut high_water: HashMap<K, (usize, u64)> = HashMap::new();

    for (index, record) in records.iter().enumerate() {
        let Some((key, id)) = extract(record) else {
            verdict.unparsable += 1;
            verdict.example(|| format!("record #{index} is unparsable"));
            continue;
        };
        let Some(&pos) = commit_pos.get(&(key.clone(), id)) else {
            verdict.unexpected += 1;
            verdict.example(|| format!("record #{index} ({key:?}, {id}) was never committed"));
            continue;
        };
        let count = seen.entry((key.clone(), id)).or_insert(0);
        *count += 1;
        if *count > 1 {
            verdict.duplicates += 1;
            let n = *count;
            verdict.example(|| format!("record #{index} ({key:?}, {id}) delivered {n} times"));
            continue;
        }
        match high_water.get_mut(&key) {
            Some((hw_pos, hw_id)) if *hw_pos > pos => {
                verdict.order_violations += 1;
                let later = *hw_id;
                verdict.example(|| {
                    format!("record #{index} ({key:?}, {id}) arrived after ({key:?}, {later})")
                });
            }
            Some(hw) => *hw = (pos, id),
            None => {
                high_water.insert(key, (pos, id));
            }
        }
    }

    verdict.delivered = seen.len();
    verdict.lost = verdict.committed - verdict.delivered;
    for (key, id) in expected {
        if verdict.examples.len() >= MAX_EXAMPLES {
            break;
        }
        if !seen.contains_key(&(key.clone(), *id)) {
            verdict.example(|| format!("({key:?}, {id}) was lost"));
        }
    }
    verdict
}
