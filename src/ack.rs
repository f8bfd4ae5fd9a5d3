//! Acknowledgement: which LSN may be confirmed to PostgreSQL.
//!
//! Owns the one rule that makes delivery lossless: the confirmed position moves
//! only to the end of the last transaction all of whose records — and all earlier
//! records — Kinesis has accepted, and it never moves backwards. Every record gets
//! a delivery sequence number when it enters the sink; every transaction end is a
//! marker "all records with a smaller sequence number belong to this transaction
//! or an earlier one". It never sends anything itself.

use std::collections::{BTreeSet, VecDeque};

use crate::lsn::Lsn;

#[derive(Debug, Default)]
pub struct AckTracker {
    next_seq: u64,
    /// Records handed to the sink and not yet accepted.
    outstanding: BTreeSet<u64>,
    /// Transaction ends not yet confirmable: (records before this seq, end LSN).
    commits: VecDeque<(u64, Lsn)>,
    acked: Lsn,
}

impl AckTracker {
    /// Start from the slot's confirmed position (never confirm below it).
    pub fn new(start: Lsn) -> Self {
        AckTracker {
            acked: start,
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
        self.commits.push_back((self.next_seq, end_lsn));
        self.advance();
    }

    /// Kinesis accepted the record `seq`.
    pub fn accept(&mut self, seq: u64) {
        let removed = self.outstanding.remove(&seq);
        debug_assert!(removed, "record {seq} accepted twice or never registered");
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

    fn advance(&mut self) {
        let first_unaccepted = self.outstanding.first().copied().unwrap_or(self.next_seq);
        while let Some(&(before, lsn)) = self.commits.front() {
            if before > first_unaccepted {
                break;
            }
            // A transaction whose end is below the start position was already
            // confirmed; max() keeps the position monotonic either way.
            self.acked = self.acked.max(lsn);
            self.commits.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirms_only_complete_prefixes() {
        let mut t = AckTracker::new(Lsn(10));
        let a = t.register_record();
        let b = t.register_record();
        t.register_commit(Lsn(100));
        let c = t.register_record();
        t.register_commit(Lsn(200));
        assert_eq!(t.acked(), Lsn(10));
        // The second transaction completes first: nothing may be confirmed yet.
        t.accept(c);
        assert_eq!(t.acked(), Lsn(10));
        t.accept(a);
        assert_eq!(t.acked(), Lsn(10));
        t.accept(b);
        assert_eq!(t.acked(), Lsn(200));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn empty_transactions_confirm_when_everything_before_is_accepted() {
        let mut t = AckTracker::new(Lsn(0));
        t.register_commit(Lsn(50));
        assert_eq!(t.acked(), Lsn(50));
        let a = t.register_record();
        t.register_commit(Lsn(60));
        t.register_commit(Lsn(70));
        assert_eq!(t.acked(), Lsn(50));
        t.accept(a);
        assert_eq!(t.acked(), Lsn(70));
    }

    #[test]
    fn never_moves_backwards() {
        let mut t = AckTracker::new(Lsn(500));
        t.register_commit(Lsn(100));
        assert_eq!(t.acked(), Lsn(500));
    }
}
