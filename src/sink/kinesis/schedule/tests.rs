//! Unit tests of the scheduler: per-key order, hot keys, pacing and limits, claim checks,
//! and the helpers its submodules share (barriers, aggregates, the random walk).

use std::time::Duration;

use super::*;
use crate::sink::kinesis::aggregate::deaggregate;
use crate::sink::kinesis::shards::ShardRange;

mod aggregates;
mod barriers;
mod walk;

const UNPACED: ShardLimits = ShardLimits::NONE;

fn plain(max_units: usize) -> Limits {
    Limits {
        max_units,
        max_bytes: 5 << 20,
        aggregate_bytes: None,
    }
}

fn kpl(max_units: usize, largest: usize) -> Limits {
    Limits {
        max_units,
        max_bytes: 5 << 20,
        aggregate_bytes: Some(largest),
    }
}

fn entry(seq: u64, key: &str) -> Entry {
    Entry::new(seq, Record::new(key, format!("r{seq}").into_bytes()))
}

fn table_entry(seq: u64, key: &str, table: u64, barrier: bool) -> Entry {
    let mut record = Record::new(key, format!("r{seq}").into_bytes());
    record.table = table;
    record.barrier = barrier;
    Entry::new(seq, record)
}

fn seqs(units: &[Unit]) -> Vec<u64> {
    units
        .iter()
        .flat_map(|u| u.members.iter().map(|e| e.seq))
        .collect()
}

/// Four shards splitting the hash space evenly, like CreateStream.
fn four_shards() -> ShardMap {
    let step = u128::MAX / 4;
    ShardMap::from_ranges(
        (0..4u128)
            .map(|i| ShardRange {
                id: format!("shardId-{i:012}"),
                start: step * i,
                end: if i == 3 {
                    u128::MAX
                } else {
                    step * (i + 1) - 1
                },
            })
            .collect(),
    )
}

/// A key that hashes to `shard` of [`four_shards`].
fn key_on(shard: usize, n: usize) -> String {
    let map = four_shards();
    (0..)
        .map(|i| format!("k{shard}-{n}-{i}"))
        .find(|k| map.shard_of(hash_key(k)) == shard)
        .unwrap()
}

#[test]
fn one_record_per_key_in_flight() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for (i, k) in ["a", "b", "a", "c", "b"].iter().enumerate() {
        s.push(entry(i as u64, k));
    }
    let now = Instant::now();
    let first = s.next_request(now, plain(500));
    assert_eq!(seqs(&first), vec![0, 1, 3]);
    // a and b are in flight: nothing else may go.
    assert!(s.next_request(now, plain(500)).is_empty());
    for u in first {
        s.accepted(u);
    }
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![2, 4]);
}

#[test]
fn an_accepted_record_releases_its_key_through_its_slot_or_else_by_hash() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for (i, k) in ["a", "b", "a", "b"].iter().enumerate() {
        s.push(entry(i as u64, k));
    }
    let now = Instant::now();
    let mut first = s.next_request(now, plain(500));
    assert_eq!(seqs(&first), vec![0, 1]);
    for u in &first {
        let e = &u.members[0];
        assert_eq!(
            s.keys.slot(e.hash),
            Some(e.key_slot as usize),
            "the hint is the key's slot"
        );
    }
    // A hint that does not name the key falls back to the hash: a slot past u32 (b's
    // record), or another live key's slot (b's, given to a's record: b holds seq 3).
    first[1].members[0].key_slot = u32::MAX;
    let b = first.pop().unwrap();
    s.accepted(b);
    first[0].members[0].key_slot = s.keys.slot(hash_key("b")).unwrap_or(0) as u32;
    for u in first {
        s.accepted(u);
    }
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![2, 3]);
}

#[test]
fn live_changes_go_before_backfilled_rows_and_a_keys_own_order_holds() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    let read = |seq: u64, key: &str| {
        let mut record = Record::new(key, format!("r{seq}").into_bytes());
        record.background = true;
        Entry::new(seq, record)
    };
    // Backfilled rows of a and b, then live changes of c, d and a.
    s.push(read(0, "a"));
    s.push(read(1, "b"));
    s.push(entry(2, "c"));
    s.push(entry(3, "d"));
    s.push(entry(4, "a"));
    let now = Instant::now();
    let first = s.next_request(now, plain(3));
    assert_eq!(
        seqs(&first),
        vec![2, 3, 0],
        "live c and d first; a's read before a's change"
    );
    for u in first {
        s.accepted(u);
    }
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![4, 1]);
}

#[test]
fn failed_record_goes_before_later_records_of_its_key() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(entry(0, "a"));
    s.push(entry(1, "b"));
    s.push(entry(2, "a"));
    let now = Instant::now();
    let mut units = s.next_request(now, plain(500));
    assert_eq!(seqs(&units), vec![0, 1]);
    let b = units.pop().unwrap();
    let a = units.pop().unwrap();
    s.accepted(b);
    s.failed(a, None);
    let again = s.next_request(now, plain(500));
    assert_eq!(
        seqs(&again),
        vec![0],
        "seq 2 must wait behind the retried seq 0"
    );
    assert_eq!(again[0].members[0].attempts, 1);
}

#[test]
fn backoff_delays_the_key_and_reports_when_due() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(entry(0, "a"));
    s.push(entry(1, "a"));
    s.push(entry(2, "b"));
    let now = Instant::now();
    let mut units = s.next_request(now, plain(500));
    assert_eq!(seqs(&units), vec![0, 2]);
    s.accepted(units.pop().unwrap());
    let later = now + Duration::from_secs(1);
    s.failed(units.pop().unwrap(), Some(later));
    assert!(s.next_request(now, plain(500)).is_empty());
    assert_eq!(s.next_wake(now), Some(later));
    assert_eq!(seqs(&s.next_request(later, plain(500))), vec![0]);
}

#[test]
fn a_hot_key_never_hides_cold_keys_behind_it() {
    // 100,000 buffered changes of one key, then one change each of 300 other keys:
    // the first request carries the hot key's head and every cold key.
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..100_000u64 {
        s.push(entry(i, "public.no_pk"));
    }
    for i in 0..300u64 {
        s.push(entry(100_000 + i, &format!("public.t|{i}")));
    }
    let units = s.next_request(Instant::now(), plain(500));
    assert_eq!(units.len(), 301);
    assert_eq!(units[0].members[0].seq, 0);
    assert!(units[1..].iter().all(|u| u.members[0].seq >= 100_000));
}

#[test]
fn respects_record_and_byte_limits() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..1200u64 {
        s.push(entry(i, &format!("k{i}")));
    }
    let now = Instant::now();
    let sizes: Vec<usize> = (0..3)
        .map(|_| s.next_request(now, plain(500)).len())
        .collect();
    assert_eq!(sizes, vec![500, 500, 200]);
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..10u64 {
        s.push(entry(i, &format!("k{i}"))); // 4 bytes: "k0" + "r0"
    }
    let limits = Limits {
        max_units: 500,
        max_bytes: 12,
        aggregate_bytes: None,
    };
    assert_eq!(s.next_request(now, limits).len(), 3);
    assert_eq!(s.len(), 7);
}

#[test]
fn each_shard_is_paced_on_its_own() {
    let limits = ShardLimits {
        records_per_sec: 10,
        bytes_per_sec: 1 << 20,
    };
    let mut s = Scheduler::new(four_shards(), limits);
    let mut seq = 0;
    for shard in 0..4 {
        for n in 0..25 {
            s.push(entry(seq, &key_on(shard, n)));
            seq += 1;
        }
    }
    let now = Instant::now();
    let units = s.next_request(now, plain(500));
    // 10 per shard in this window, from every shard.
    assert_eq!(units.len(), 40);
    for shard in 0..4 {
        assert_eq!(units.iter().filter(|u| u.shard == shard).count(), 10);
    }
    assert!(s.next_request(now, plain(500)).is_empty());
    let wake = s.next_wake(now).expect("paced shards open again");
    assert!(wake > now && wake <= now + Duration::from_millis(1100));
    assert_eq!(s.next_request(wake, plain(500)).len(), 40);
}

#[test]
fn a_throttled_shard_backs_off_alone() {
    let mut s = Scheduler::new(four_shards(), UNPACED);
    let mut seq = 0;
    for n in 0..3 {
        for shard in 0..4 {
            s.push(entry(seq, &key_on(shard, n)));
            seq += 1;
        }
    }
    for shard in 0..4 {
        s.push(entry(seq, &key_on(shard, 0)));
        seq += 1;
    }
    let now = Instant::now();
    let units = s.next_request(now, plain(500));
    assert_eq!(units.len(), 12, "one record of each key");
    for unit in units {
        if unit.shard == 2 {
            s.failed(unit, None);
        } else {
            s.accepted(unit);
        }
    }
    s.shard_throttled(2, now);
    let next = s.next_request(now, plain(500));
    assert!(next.iter().all(|u| u.shard != 2), "shard 2 waits");
    assert_eq!(next.len(), 3, "the other shards keep going");
    let wake = s.next_wake(now).expect("shard 2 opens again");
    assert!(wake > now);
    let after = s.next_request(wake, plain(500));
    assert!(after.iter().all(|u| u.shard == 2));
    assert_eq!(after.len(), 3, "shard 2's keys, one record each");
}

#[test]
fn held_bytes_cover_records_until_accepted() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(entry(0, "a"));
    s.push(entry(1, "b"));
    let each = "a".len() + "r0".len() + ENTRY_OVERHEAD;
    assert_eq!(s.held_bytes(), 2 * each);
    let units = s.next_request(Instant::now(), plain(500));
    assert_eq!(s.held_bytes(), 2 * each, "in flight still counts");
    for u in units {
        s.accepted(u);
    }
    assert_eq!(s.held_bytes(), 0);
    assert!(
        s.keys.is_empty() && s.tables.is_empty(),
        "no bookkeeping left behind"
    );
}

#[test]
fn remapping_moves_keys_to_their_new_shards() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for n in 0..8 {
        s.push(entry(n as u64, &key_on(n % 4, n)));
    }
    s.remap(four_shards());
    let units = s.next_request(Instant::now(), plain(500));
    assert_eq!(units.len(), 8);
    for unit in &units {
        assert_eq!(
            four_shards().shard_of(hash_key(unit.partition_key())),
            unit.shard
        );
    }
}

#[test]
fn a_claim_check_waits_for_its_object_holding_its_key_only() {
    for limits in [plain(500), kpl(500, 1 << 20)] {
        let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
        s.push(entry(0, "a"));
        let mut claim = entry(1, "a");
        claim.waiting = true;
        s.push(claim);
        s.push(entry(2, "a"));
        s.push(entry(3, "b"));
        let now = Instant::now();
        let first = s.next_request(now, limits);
        assert_eq!(
            seqs(&first),
            [0, 3],
            "the key's earlier record and other keys go"
        );
        for unit in first {
            s.accepted(unit);
        }
        assert!(
            s.next_request(now, limits).is_empty(),
            "nothing of `a` passes its claim check while the object is not stored"
        );
        assert_eq!(s.len(), 2);
        s.stored("a", 1);
        let mut sent = Vec::new();
        while !s.is_empty() {
            let units = s.next_request(now, limits);
            assert!(!units.is_empty(), "stalled with {} queued", s.len());
            sent.extend(seqs(&units));
            for unit in units {
                s.accepted(unit);
            }
        }
        assert_eq!(
            sent,
            [1, 2],
            "then the claim check, then the key's later record"
        );
    }
}
