//! Acknowledgement: which LSN may be confirmed to PostgreSQL.
//!
//! Owns the one rule that makes delivery lossless: the confirmed position moves
//! only to the end of the last transaction all of whose records — and all earlier
//! records — Kinesis has accepted, and it never moves backwards. Every record gets
//! a delivery sequence number when it enters the sink; every transaction end is a
//! marker "all records with a smaller sequence number belong to this transaction
//! or an earlier one". It never sends anything itself.
//!
//! Memory is bounded by the records outstanding, not by the transactions behind
//! them: markers with no outstanding record between them are equivalent (they
//! become confirmable at the same moment), so they are kept as one. A stuck record
//! followed by a million transactions — empty, filtered, or all of whose records
//! were accepted — holds one marker, not a million.
//!
//! [`Confirmed`] is the position actually sent to PostgreSQL; it only moves forward.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::lsn::Lsn;

#[derive(Debug, Default)]
pub struct AckTracker {
    next_seq: u64,
    /// Records handed to the sink and not yet accepted.
    outstanding: outstanding::Outstanding,
    /// Transaction ends not yet confirmable: records before this seq → end LSN.
    /// Between two consecutive markers there is always an outstanding record.
    commits: BTreeMap<u64, Lsn>,
    acked: Lsn,
    /// Records accepted so far, readable by the session from another task.
    accepted: Arc<AtomicU64>,
}

impl AckTracker {
    /// Start from the slot's confirmed position (never confirm below it).
    pub fn new(start: Lsn) -> Self {
        AckTracker {
            acked: start,
            ..Default::default()
        }
    }

    /// Another tracker from `start` that counts its accepted records into this one's
    /// [`AcceptedCount`]: one per stream of a routed slot, so that the session's
    /// "nothing in flight" check sees every stream's.
    pub fn sharing_count(&self, start: Lsn) -> Self {
        AckTracker {
            acked: start,
            accepted: self.accepted.clone(),
            ..Default::default()
        }
    }

    /// A record enters the sink: its sequence number.
    pub fn register_record(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.outstanding.insert(seq);
        seq
    }

    /// A transaction ends at `end_lsn`; every record registered so far belongs to
    /// it or to an earlier transaction.
    pub fn register_commit(&mut self, end_lsn: Lsn) {
        let lsn = match self.commits.last_key_value() {
            // No outstanding record since the previous marker: this one replaces it.
            Some((&before, &prev)) if self.outstanding.first_from(before).is_none() => {
                self.commits.remove(&before);
                prev.max(end_lsn)
            }
            _ => end_lsn,
        };
        self.commits.insert(self.next_seq, lsn);
        self.advance();
    }

    /// Kinesis accepted the record `seq`.
    pub fn accept(&mut self, seq: u64) {
        self.accept_all(&mut [seq]);
    }

    /// Kinesis accepted the records `seqs` (one answer's; sorted here in place): what
    /// [`Self::accept`] on each would do, with the markers around them coalesced once
    /// per transaction they fall in rather than once per record, and the position
    /// moved once.
    pub fn accept_all(&mut self, seqs: &mut [u64]) {
        let mut removed = 0;
        for seq in seqs.iter() {
            let was = self.outstanding.remove(*seq);
            debug_assert!(was, "record {seq} accepted twice or never registered");
            removed += u64::from(was);
        }
        if removed > 0 {
            self.accepted.fetch_add(removed, Ordering::Release);
        }
        seqs.sort_unstable();
        let mut i = 0;
        while let Some(&seq) = seqs.get(i) {
            // The records of one answer mostly share a transaction: one look per
            // transaction, then past the records before its end marker.
            let end = self.coalesce_around(seq);
            i += seqs[i..].partition_point(|&s| s < end).max(1);
        }
        self.advance();
    }

    /// The position that may be confirmed now.
    pub fn acked(&self) -> Lsn {
        self.acked
    }

    /// Records handed in and not yet accepted.
    pub fn pending(&self) -> usize {
        self.outstanding.len()
    }

    /// How many records this tracker has seen accepted, shared with other tasks:
    /// the session compares it with the records it read to know that nothing is in
    /// flight (LSN comparisons cannot tell where transactions are labelled out of
    /// commit order).
    pub fn accepted_count(&self) -> AcceptedCount {
        AcceptedCount(self.accepted.clone())
    }

    /// The markers on either side of the accepted record `seq` collapse into the
    /// later one when no outstanding record is left between them. Returns that later
    /// marker (`u64::MAX` when there is none): records below it share `seq`'s fate.
    fn coalesce_around(&mut self, seq: u64) -> u64 {
        let above = (Bound::Excluded(seq), Bound::Unbounded);
        let Some((&after, &later)) = self.commits.range(above).next() else {
            return u64::MAX; // After the last marker: its transaction has not ended.
        };
        let Some((&before, _)) = self.commits.range(..=seq).next_back() else {
            return after; // Before the first marker: advance() handles it.
        };
        if !self.outstanding.any_in(before, after) {
            let earlier = self.commits.remove(&before).unwrap_or_default();
            self.commits.insert(after, earlier.max(later));
        }
        after
    }

    fn advance(&mut self) {
        let first_unaccepted = self.outstanding.first().unwrap_or(self.next_seq);
        while let Some(entry) = self.commits.first_entry() {
            if *entry.key() > first_unaccepted {
                break;
            }
            // A transaction whose end is below the start position was already
            // confirmed; max() keeps the position monotonic either way.
            self.acked = self.acked.max(entry.remove());
        }
    }
}

/// The number of records an [`AckTracker`] has seen accepted, from another task.
#[derive(Debug, Clone, Default)]
pub struct AcceptedCount(Arc<AtomicU64>);

impl AcceptedCount {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }
}

/// The position sent to PostgreSQL in standby status updates. The one place that
/// keeps it monotonic: PostgreSQL 15 stores a lower confirmation as given, which
/// would move the slot back below what an earlier update (and the checkpoint) hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Confirmed(Lsn);

impl Confirmed {
    /// Starting at the slot's confirmed position.
    pub fn new(start: Lsn) -> Self {
        Confirmed(start)
    }

    /// The position to send now for `candidate`: never above `limit` (a position the
    /// checkpoint must reach first, see `Checkpointer::confirm_limit`), and never
    /// below any position sent before.
    pub fn next(&mut self, candidate: Lsn, limit: Option<Lsn>) -> Lsn {
        let before = self.0;
        let capped = limit.map_or(candidate, |l| candidate.min(l));
        self.0 = self.0.max(capped);
        debug_assert!(self.0 >= before, "confirmed position moved backwards");
        self.0
    }

    pub fn get(&self) -> Lsn {
        self.0
    }
}

/// The records not yet accepted, as bitmaps.
mod outstanding;

#[cfg(test)]
mod tests;
