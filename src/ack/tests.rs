//! Unit tests of acknowledgement: only complete prefixes confirm, never backwards,
//! markers stay bounded behind a stuck record, per-stream trackers confirm their lowest.

use super::*;
use std::collections::BTreeSet;

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

#[test]
fn commit_markers_stay_bounded_behind_one_stuck_record() {
    let mut t = AckTracker::new(Lsn(0));
    let stuck = t.register_record();
    t.register_commit(Lsn(10));
    for i in 0..100_000u64 {
        match i % 3 {
            // Empty or filtered transactions: a commit with no record.
            0 => t.register_commit(Lsn(20 + i)),
            // Transactions whose records were all accepted.
            _ => {
                let r = t.register_record();
                t.register_commit(Lsn(20 + i));
                t.accept(r);
            }
        }
    }
    assert_eq!(t.pending(), 1);
    assert!(
        t.commits.len() <= 1,
        "{} markers held for one outstanding record",
        t.commits.len()
    );
    assert_eq!(t.acked(), Lsn(0));
    t.accept(stuck);
    assert_eq!(t.acked(), Lsn(20 + 99_999));
    assert!(t.commits.is_empty());
}

/// The tracker as it was before markers were coalesced: one marker per commit.
#[derive(Default)]
struct Plain {
    next: u64,
    outstanding: BTreeSet<u64>,
    commits: std::collections::VecDeque<(u64, Lsn)>,
    acked: Lsn,
}

impl Plain {
    fn advance(&mut self) {
        let first = self.outstanding.first().copied().unwrap_or(self.next);
        while let Some(&(before, lsn)) = self.commits.front() {
            if before > first {
                break;
            }
            self.acked = self.acked.max(lsn);
            self.commits.pop_front();
        }
    }
}

#[test]
fn coalesced_markers_confirm_exactly_what_one_marker_per_commit_would() {
    // A small deterministic generator (xorshift), so failures reproduce.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut rand = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..200 {
        let mut t = AckTracker::new(Lsn(0));
        // The same records accepted one at a time, where `t` takes answers whole.
        let mut one_by_one = AckTracker::new(Lsn(0));
        let mut plain = Plain::default();
        let mut open: Vec<u64> = Vec::new();
        let mut lsn = 0;
        for _ in 0..300 {
            match rand(10) {
                0..=3 => {
                    let seq = t.register_record();
                    assert_eq!(one_by_one.register_record(), seq);
                    assert_eq!(seq, plain.next);
                    plain.outstanding.insert(seq);
                    plain.next += 1;
                    open.push(seq);
                }
                4..=6 => {
                    // Mostly rising, sometimes lower (labels out of commit order).
                    lsn = if rand(5) == 0 {
                        lsn / 2
                    } else {
                        lsn + 1 + rand(100)
                    };
                    t.register_commit(Lsn(lsn));
                    one_by_one.register_commit(Lsn(lsn));
                    plain.commits.push_back((plain.next, Lsn(lsn)));
                    plain.advance();
                }
                7 | 8 if !open.is_empty() => {
                    let seq = open.swap_remove(rand(open.len() as u64) as usize);
                    t.accept(seq);
                    one_by_one.accept(seq);
                    plain.outstanding.remove(&seq);
                    plain.advance();
                }
                // An answer's worth at once, in any order, across transactions.
                9 if !open.is_empty() => {
                    let mut answer: Vec<u64> = (0..=rand(open.len().min(12) as u64))
                        .map(|_| open.swap_remove(rand(open.len() as u64) as usize))
                        .collect();
                    for seq in &answer {
                        plain.outstanding.remove(seq);
                        one_by_one.accept(*seq);
                    }
                    t.accept_all(&mut answer);
                    plain.advance();
                }
                _ => {}
            }
            assert_eq!(t.acked(), plain.acked);
            assert_eq!(t.pending(), plain.outstanding.len());
            assert!(t.commits.len() <= t.pending(), "markers beyond records");
            // Coalesced exactly as one record at a time would: the same markers.
            assert_eq!(t.commits, one_by_one.commits);
            assert_eq!(t.accepted_count().get(), one_by_one.accepted_count().get());
            assert_eq!(t.acked(), one_by_one.acked());
        }
    }
}

#[test]
fn accepted_count_is_visible_through_the_shared_handle() {
    let mut t = AckTracker::new(Lsn(0));
    let count = t.accepted_count();
    let a = t.register_record();
    let b = t.register_record();
    assert_eq!(count.get(), 0);
    t.accept(b);
    t.accept(a);
    assert_eq!(count.get(), 2);
}

#[test]
fn confirmed_never_moves_backwards_and_waits_below_a_limit() {
    let mut c = Confirmed::new(Lsn(100));
    assert_eq!(c.next(Lsn(500), None), Lsn(500));
    assert_eq!(c.next(Lsn(200), None), Lsn(500), "a lower candidate");
    let mut held = Confirmed::new(Lsn(100));
    assert_eq!(held.next(Lsn(900), Some(Lsn(100))), Lsn(100), "held");
    assert_eq!(held.next(Lsn(900), Some(Lsn(50))), Lsn(100), "never below");
    assert_eq!(held.next(Lsn(900), None), Lsn(900), "released");
    assert_eq!(held.get(), Lsn(900));
}

#[test]
fn the_lowest_of_per_stream_trackers_confirms_exactly_what_one_tracker_over_all_would() {
    // A routed slot: each record goes to one of three streams' trackers, every
    // transaction end to all of them; the slot confirms the lowest position.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut rand = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    for _ in 0..200 {
        let mut one = AckTracker::new(Lsn(5));
        let mut streams: Vec<AckTracker> = (0..3).map(|_| one.sharing_count(Lsn(5))).collect();
        // (stream, seq in that stream, seq in `one`)
        let mut open: Vec<(usize, u64, u64)> = Vec::new();
        let mut lsn = 5;
        for _ in 0..300 {
            match rand(10) {
                0..=3 => {
                    let s = rand(3) as usize;
                    open.push((s, streams[s].register_record(), one.register_record()));
                }
                4..=6 => {
                    lsn = if rand(5) == 0 {
                        lsn / 2
                    } else {
                        lsn + 1 + rand(100)
                    };
                    one.register_commit(Lsn(lsn));
                    streams.iter_mut().for_each(|t| t.register_commit(Lsn(lsn)));
                }
                _ if !open.is_empty() => {
                    let (s, seq, all) = open.swap_remove(rand(open.len() as u64) as usize);
                    streams[s].accept(seq);
                    one.accept(all);
                }
                _ => {}
            }
            let lowest = streams.iter().map(AckTracker::acked).min().unwrap();
            assert_eq!(lowest, one.acked());
        }
    }
}

#[test]
fn a_stream_that_accepted_nothing_holds_the_slot_back() {
    let a = AckTracker::new(Lsn(0));
    let mut streams = [a.sharing_count(Lsn(0)), a.sharing_count(Lsn(0))];
    let count = a.accepted_count();
    let r0 = streams[0].register_record();
    let r1 = streams[1].register_record();
    streams.iter_mut().for_each(|t| t.register_commit(Lsn(100)));
    streams[0].accept(r0);
    assert_eq!(streams[0].acked(), Lsn(100));
    assert_eq!(streams.iter().map(AckTracker::acked).min(), Some(Lsn(0)));
    streams[1].accept(r1);
    assert_eq!(streams.iter().map(AckTracker::acked).min(), Some(Lsn(100)));
    assert_eq!(count.get(), 2, "one count across the streams");
}
