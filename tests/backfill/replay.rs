//! Replaying a stream as a consumer applying it by key would: the rows it ends with,
//! per-key order violations, stale reads, and the differences from the tables.

use std::collections::{BTreeMap, HashMap};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::sink::kinesis::aggregate::deaggregate;
use serde_json::{Map, Value};

use crate::support::kinesis::ReadRecord;

/// Every user record of `records` (aggregates opened), in stream order per shard.
pub(super) fn user_records(records: &[ReadRecord]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for r in records {
        for u in deaggregate(&r.partition_key, &r.data).expect("a valid aggregate") {
            let v: Value = serde_json::from_slice(&u.data).expect("a JSON record");
            out.push((u.partition_key, v));
        }
    }
    out
}

/// What replaying the stream shows, and what it found wrong.
#[derive(Debug, Default)]
pub(super) struct Replay {
    /// key → row (the record's `data`), for keys that exist at the end.
    pub(super) rows: BTreeMap<String, Map<String, Value>>,
    pub(super) reads: u64,
    pub(super) changes: u64,
    /// A `read` that is older than a change before it of its key.
    pub(super) stale_reads: Vec<String>,
    /// A key whose records arrived out of `(commit_lsn, seq)` order.
    pub(super) order_violations: Vec<String>,
    /// Chunks that sent rows: (table, chunk) → reads.
    pub(super) chunks: BTreeMap<(String, u64), u64>,
    /// Per key, its records as the stream holds them (kind, position, chunk, `v`):
    /// what a failure prints for the keys that differ.
    pub(super) trace: HashMap<String, Vec<String>>,
}

pub(super) fn position(v: &Value) -> (Lsn, u64) {
    (
        v["commit_lsn"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        v["seq"].as_u64().unwrap_or_default(),
    )
}

/// Replays `records` in commit order, as a consumer applying them by key would. An
/// update that left out an unchanged TOASTed column keeps the column's value; the
/// insert half of a key change takes it from the row its delete half removed. A
/// `read` must equal a state its row had at or after the last change before it.
/// Per key, the stream order must be the commit order.
pub(super) fn replay(records: &[(String, Value)]) -> Replay {
    let mut out = Replay::default();
    // Redelivery after a crash repeats records already seen: only an unseen record
    // behind a later one is out of order.
    let mut last_at: HashMap<&str, (Lsn, u64)> = HashMap::new();
    let mut seen_at: std::collections::HashSet<(&str, (Lsn, u64))> = Default::default();
    for (key, v) in records {
        let at = position(v);
        out.trace.entry(key.clone()).or_default().push(format!(
            "{}{} at {}/{}{} v={}",
            v["kind"].as_str().unwrap_or("?"),
            if v["key_change"] == Value::Bool(true) {
                " (key change)"
            } else {
                ""
            },
            at.0,
            at.1,
            v["snapshot"]["chunk"]
                .as_u64()
                .map_or(String::new(), |c| format!(" chunk {c}")),
            v["data"]["v"]
        ));
        let repeat = !seen_at.insert((key.as_str(), at));
        if let Some(prev) = last_at.insert(key, at) {
            if prev >= at && !repeat {
                out.order_violations
                    .push(format!("{key}: {at:?} after {prev:?}"));
            }
        }
    }
    let mut sorted: Vec<&(String, Value)> = records.iter().collect();
    sorted.sort_by_key(|(_, v)| position(v));
    // A redelivered record is applied once.
    sorted.dedup_by_key(|(k, v)| (k.clone(), position(v)));
    let mut state: HashMap<String, Map<String, Value>> = HashMap::new();
    // Per key, the states it went through by changes (after each), for the reads.
    let mut history: HashMap<String, Vec<Option<Map<String, Value>>>> = HashMap::new();
    let mut reads: Vec<(String, usize, Map<String, Value>)> = Vec::new();
    // The row a key change's delete half removed, for its insert half.
    let mut moved: Option<Map<String, Value>> = None;
    for (key, v) in sorted {
        let data = v["data"].as_object().cloned().unwrap_or_default();
        let key_change = v["key_change"] == Value::Bool(true);
        match v["kind"].as_str().unwrap_or_default() {
            "read" => {
                out.reads += 1;
                let table = v["snapshot"]["table"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let chunk = v["snapshot"]["chunk"].as_u64().unwrap_or_default();
                *out.chunks.entry((table, chunk)).or_default() += 1;
                let before = history.get(key).map_or(0, Vec::len);
                reads.push((key.clone(), before, data.clone()));
                state.insert(key.clone(), data);
                continue;
            }
            "delete" => {
                let gone = state.remove(key);
                if key_change {
                    moved = gone;
                }
            }
            "insert" => {
                let mut row = data;
                if key_change {
                    for (c, value) in moved.take().unwrap_or_default() {
                        row.entry(c).or_insert(value);
                    }
                }
                state.insert(key.clone(), row);
            }
            "update" => {
                let row = state.entry(key.clone()).or_default();
                row.extend(data);
            }
            other => panic!("unexpected record kind {other:?}: {v}"),
        }
        out.changes += 1;
        history
            .entry(key.clone())
            .or_default()
            .push(state.get(key).cloned());
    }
    for (key, before, data) in reads {
        let states = history.get(&key).cloned().unwrap_or_default();
        let fresh = before == 0
            || states[before - 1..]
                .iter()
                .any(|s| s.as_ref().is_some_and(|s| same_row(s, &data)));
        if !fresh {
            out.stale_reads
                .push(format!("{key}: read {data:?} after {before} change(s)"));
        }
    }
    out.rows = state.into_iter().collect();
    out
}

/// Two rows alike where both have a column (a read has every column; a state built
/// from changes may lack a TOASTed column it never saw).
pub(super) fn same_row(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

/// The stream's rows, compared with the tables: what is missing, extra or different.
pub(super) fn differences(
    replayed: &BTreeMap<String, Map<String, Value>>,
    tables: &BTreeMap<String, (Option<String>, Option<String>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, (v, big)) in tables {
        match replayed.get(key) {
            None => out.push(format!("{key} missing from the stream")),
            Some(row) => {
                let text = |c: &str| row.get(c).and_then(|x| x.as_str()).map(str::to_string);
                if text("v") != *v {
                    out.push(format!(
                        "{key}: v {:?} on the stream, {v:?} in the table",
                        text("v")
                    ));
                }
                if text("big") != *big {
                    out.push(format!(
                        "{key}: big differs ({:?} bytes on the stream, {:?} in the table)",
                        text("big").map(|s| s.len()),
                        big.as_ref().map(|s| s.len())
                    ));
                }
            }
        }
    }
    for key in replayed.keys() {
        if !tables.contains_key(key) {
            out.push(format!("{key} on the stream but not in the table"));
        }
    }
    out
}
