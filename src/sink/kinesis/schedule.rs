//! Which buffered records go into the next `PutRecords` request.
//!
//! Owns the per-key ordering rule. `PutRecords` does not stop at a failed entry,
//! so if two records with the same partition key shared a request (or two
//! concurrent requests) and the first failed while the second succeeded, the
//! second would reach the stream first. The only way to keep per-key order through
//! partial failures is therefore: **at most one record per partition key in flight**.
//! Different keys go out in parallel, up to 500 per request. A failed record goes
//! back into the buffer at its original position, ahead of every later record with
//! its key, so it is always resent before them. This module never drops a record.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::time::Instant;

use crate::record::Record;

/// How far past the first blocked record a scan may look for sendable ones, in
/// multiples of the batch size. Bounds the cost of a scan when a hot key blocks.
const SCAN_FACTOR: usize = 8;

/// A record waiting for Kinesis, with its delivery sequence number.
#[derive(Debug)]
pub struct Entry {
    /// Position in the slot's delivery order (see `pipeline::progress`).
    pub seq: u64,
    pub record: Record,
    key_hash: u64,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not to be sent before this instant (retry backoff).
    not_before: Option<Instant>,
    /// When the record entered the sink (for linger).
    enqueued: Instant,
}

impl Entry {
    pub fn new(seq: u64, record: Record) -> Self {
        let mut h = DefaultHasher::new();
        record.partition_key.hash(&mut h);
        Entry {
            seq,
            key_hash: h.finish(),
            record,
            attempts: 0,
            not_before: None,
            enqueued: Instant::now(),
        }
    }
}

/// Records not yet accepted and not in flight, in delivery order, plus the keys in flight.
#[derive(Debug, Default)]
pub struct Scheduler {
    buffer: VecDeque<Entry>,
    buffered_bytes: usize,
    /// Hashes of the partition keys with a record in flight. A hash collision only
    /// serialises two keys, which is safe.
    in_flight: HashSet<u64>,
}

/// What `next_batch` found.
#[derive(Debug)]
pub struct Batch {
    pub entries: Vec<Entry>,
    /// When a record that is waiting out a retry backoff becomes sendable.
    pub next_due: Option<Instant>,
}

impl Scheduler {
    pub fn push(&mut self, entry: Entry) {
        debug_assert!(
            self.buffer.back().is_none_or(|b| b.seq < entry.seq),
            "records must arrive in order"
        );
        self.buffered_bytes += entry.record.billed_size();
        self.buffer.push_back(entry);
    }

    /// Records buffered (not in flight).
    pub fn len(&self) -> usize {
        self.buffer.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.buffered_bytes
    }

    /// When the oldest buffered record entered the sink.
    pub fn oldest_enqueued(&self) -> Option<Instant> {
        self.buffer.front().map(|e| e.enqueued)
    }

    /// Take up to `max_records` / `max_bytes` of sendable records, oldest first,
    /// skipping (and keeping) any record whose key is in flight, waiting out a
    /// backoff, or behind an earlier skipped record of its key.
    pub fn next_batch(&mut self, now: Instant, max_records: usize, max_bytes: usize) -> Batch {
        let mut entries = Vec::new();
        let mut skipped: Vec<Entry> = Vec::new();
        let mut blocked: HashSet<u64> = HashSet::new();
        let mut next_due: Option<Instant> = None;
        let mut bytes = 0usize;
        let scan_limit = max_records.saturating_mul(SCAN_FACTOR);
        let mut scanned = 0usize;
        while entries.len() < max_records && scanned < scan_limit {
            let Some(entry) = self.buffer.pop_front() else {
                break;
            };
            scanned += 1;
            let key = entry.key_hash;
            if self.in_flight.contains(&key) || blocked.contains(&key) {
                blocked.insert(key);
                skipped.push(entry);
                continue;
            }
            if let Some(due) = entry.not_before.filter(|due| *due > now) {
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
                blocked.insert(key);
                skipped.push(entry);
                continue;
            }
            let size = entry.record.billed_size();
            if !entries.is_empty() && bytes + size > max_bytes {
                skipped.push(entry);
                break;
            }
            bytes += size;
            self.in_flight.insert(key);
            entries.push(entry);
        }
        for entry in skipped.into_iter().rev() {
            self.buffer.push_front(entry);
        }
        self.buffered_bytes -= bytes;
        Batch { entries, next_due }
    }

    /// Kinesis accepted these: their keys may send again.
    pub fn accepted(&mut self, entries: &[Entry]) {
        for entry in entries {
            self.in_flight.remove(&entry.key_hash);
        }
    }

    /// These were not accepted: release their keys and put them back in delivery
    /// order, to be retried no earlier than `not_before`.
    pub fn failed(&mut self, mut entries: Vec<Entry>, not_before: Instant) {
        if entries.is_empty() {
            return;
        }
        entries.sort_by_key(|e| e.seq);
        for entry in &mut entries {
            self.in_flight.remove(&entry.key_hash);
            entry.attempts += 1;
            entry.not_before = Some(not_before);
            self.buffered_bytes += entry.record.billed_size();
        }
        let old = std::mem::take(&mut self.buffer);
        let mut merged = VecDeque::with_capacity(old.len() + entries.len());
        let mut a = old.into_iter().peekable();
        let mut b = entries.into_iter().peekable();
        loop {
            let take_a = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => x.seq < y.seq,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_a { a.next() } else { b.next() };
            merged.extend(next);
        }
        self.buffer = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(seq: u64, key: &str) -> Entry {
        Entry::new(
            seq,
            Record {
                partition_key: key.into(),
                data: vec![0; 10],
            },
        )
    }

    fn seqs(batch: &Batch) -> Vec<u64> {
        batch.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn one_record_per_key_in_flight() {
        let mut s = Scheduler::default();
        for (i, k) in ["a", "b", "a", "c", "b"].iter().enumerate() {
            s.push(entry(i as u64, k));
        }
        let now = Instant::now();
        let first = s.next_batch(now, 500, 1 << 20);
        assert_eq!(seqs(&first), vec![0, 1, 3]);
        // a and b are in flight: nothing else may go.
        assert!(s.next_batch(now, 500, 1 << 20).entries.is_empty());
        s.accepted(&first.entries);
        assert_eq!(seqs(&s.next_batch(now, 500, 1 << 20)), vec![2, 4]);
    }

    #[test]
    fn failed_record_goes_before_later_records_of_its_key() {
        let mut s = Scheduler::default();
        s.push(entry(0, "a"));
        s.push(entry(1, "b"));
        s.push(entry(2, "a"));
        let now = Instant::now();
        let mut batch = s.next_batch(now, 500, 1 << 20);
        assert_eq!(seqs(&batch), vec![0, 1]);
        let failed_a = batch.entries.remove(0);
        s.accepted(&batch.entries);
        s.failed(vec![failed_a], now);
        let again = s.next_batch(now, 500, 1 << 20);
        assert_eq!(
            seqs(&again),
            vec![0],
            "seq 2 must wait behind the retried seq 0"
        );
        assert_eq!(again.entries[0].attempts, 1);
    }

    #[test]
    fn backoff_blocks_the_key_and_reports_when_due() {
        let mut s = Scheduler::default();
        s.push(entry(0, "a"));
        s.push(entry(1, "a"));
        s.push(entry(2, "b"));
        let now = Instant::now();
        let batch = s.next_batch(now, 500, 1 << 20);
        assert_eq!(seqs(&batch), vec![0, 2]);
        let mut entries = batch.entries;
        let b = entries.pop().unwrap();
        s.accepted(&[b]);
        let later = now + Duration::from_secs(1);
        s.failed(entries, later);
        let blocked = s.next_batch(now, 500, 1 << 20);
        assert!(blocked.entries.is_empty());
        assert_eq!(blocked.next_due, Some(later));
        assert_eq!(seqs(&s.next_batch(later, 500, 1 << 20)), vec![0]);
    }

    #[test]
    fn respects_record_and_byte_limits() {
        let mut s = Scheduler::default();
        for i in 0..1200u64 {
            s.push(entry(i, &format!("k{i}")));
        }
        let now = Instant::now();
        let sizes: Vec<usize> = (0..3)
            .map(|_| s.next_batch(now, 500, 1 << 20).entries.len())
            .collect();
        assert_eq!(sizes, vec![500, 500, 200]);
        let mut s = Scheduler::default();
        for i in 0..10u64 {
            s.push(entry(i, &format!("k{i}"))); // 12 bytes each
        }
        assert_eq!(s.next_batch(now, 500, 40).entries.len(), 3);
        assert_eq!(s.buffered_bytes(), 7 * 12);
    }
}
