//! Unit tests of the scheduler: per-key order, hot keys, pacing, barriers, aggregates.

use std::collections::HashSet;
use std::time::Duration;

use super::*;
use crate::sink::kinesis::aggregate::deaggregate;
use crate::sink::kinesis::shards::ShardRange;

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
fn truncate_waits_for_its_tables_earlier_changes_and_holds_later_ones() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(table_entry(0, "public.t|1", 7, false));
    s.push(table_entry(1, "public.t|2", 7, false));
    s.push(table_entry(2, "public.u|1", 8, false));
    s.push(table_entry(3, "public.t", 7, true));
    s.push(table_entry(4, "public.t|1", 7, false));
    s.push(table_entry(5, "public.u|2", 8, false));
    let now = Instant::now();
    let first = s.next_request(now, plain(500));
    assert_eq!(
        seqs(&first),
        vec![0, 1, 2, 5],
        "truncate and later rows of t wait"
    );
    let mut first = first.into_iter();
    let (t1, t2, u1, u2) = (
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
        first.next().unwrap(),
    );
    s.accepted(u1);
    s.accepted(u2);
    s.accepted(t1);
    s.failed(t2, None);
    let retried = s.next_request(now, plain(500));
    assert_eq!(seqs(&retried), vec![1], "the failed row of t goes again");
    assert!(
        s.next_request(now, plain(500)).is_empty(),
        "the truncate waits for it"
    );
    s.accepted(retried.into_iter().next().unwrap());
    let truncate = s.next_request(now, plain(500));
    assert_eq!(seqs(&truncate), vec![3], "then the truncate goes, alone");
    s.accepted(truncate.into_iter().next().unwrap());
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![4]);
}

#[test]
fn truncate_goes_after_acceptance_then_releases_held_rows() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    s.push(table_entry(0, "public.t|1", 7, false));
    s.push(table_entry(1, "public.t", 7, true));
    s.push(table_entry(2, "public.t|1", 7, false));
    s.push(table_entry(3, "public.t|9", 7, false));
    let now = Instant::now();
    let row = s.next_request(now, plain(500));
    assert_eq!(seqs(&row), vec![0]);
    assert!(s.next_request(now, plain(500)).is_empty());
    s.accepted(row.into_iter().next().unwrap());
    let truncate = s.next_request(now, plain(500));
    assert_eq!(seqs(&truncate), vec![1]);
    assert!(
        s.next_request(now, plain(500)).is_empty(),
        "rows after the truncate wait for it"
    );
    s.accepted(truncate.into_iter().next().unwrap());
    assert_eq!(seqs(&s.next_request(now, plain(500))), vec![2, 3]);
    assert!(s.is_empty());
}

#[test]
fn a_hot_key_aggregates_in_order_and_a_failed_aggregate_is_resent_whole() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..1000u64 {
        s.push(entry(i, "public.no_pk"));
    }
    let now = Instant::now();
    let units = s.next_request(now, kpl(500, 1 << 20));
    assert_eq!(units.len(), 1, "one key: one unit in flight");
    let unit = units.into_iter().next().unwrap();
    assert_eq!(unit.members.len(), 1000);
    let agg = unit.aggregate.as_ref().expect("aggregated");
    let inner = deaggregate(&agg.partition_key, &agg.data).unwrap();
    assert_eq!(inner.len(), 1000);
    assert_eq!(inner[0].data, b"r0");
    assert_eq!(inner[999].data, b"r999");
    s.failed(unit, None);
    let again = s.next_request(now, kpl(500, 1 << 20));
    assert_eq!(seqs(&again), (0..1000).collect::<Vec<_>>());
}

#[test]
fn aggregates_respect_their_size_and_pack_keys_of_one_shard() {
    let mut s = Scheduler::new(four_shards(), UNPACED);
    let mut seq = 0;
    for n in 0..50 {
        for shard in 0..4 {
            s.push(entry(seq, &key_on(shard, n)));
            seq += 1;
        }
    }
    let units = s.next_request(Instant::now(), kpl(500, 600));
    assert!(units.len() > 4, "aggregates are capped at 600 bytes");
    let map = four_shards();
    for unit in &units {
        assert!(unit.wire_size() <= 600, "{}", unit.wire_size());
        let agg = unit.aggregate.as_ref().expect("several keys per shard");
        let ehk: u128 = agg.explicit_hash_key.as_deref().unwrap().parse().unwrap();
        assert_eq!(
            map.shard_of(ehk),
            unit.shard,
            "the aggregate lands on its shard"
        );
        for member in &unit.members {
            assert_eq!(
                map.shard_of(hash_key(&member.record.partition_key)),
                unit.shard
            );
        }
    }
    assert_eq!(units.iter().map(|u| u.members.len()).sum::<usize>(), 200);
}

#[test]
fn without_a_known_layout_an_aggregate_holds_one_key() {
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..10u64 {
        s.push(entry(i, if i % 2 == 0 { "a" } else { "b" }));
    }
    let units = s.next_request(Instant::now(), kpl(500, 1 << 20));
    assert_eq!(units.len(), 2);
    for unit in &units {
        let key = &unit.members[0].record.partition_key;
        assert!(unit.members.iter().all(|m| &m.record.partition_key == key));
        assert_eq!(unit.partition_key(), key);
        assert_eq!(unit.explicit_hash_key(), None);
    }
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
fn an_accepted_aggregate_readies_each_of_its_keys_once() {
    // Regression: each accepted record of an aggregate re-readied its key, so a key
    // sat in its shard's heap several times and a second unit of it went out while
    // the first was in flight: changes of one key arrived out of order.
    let mut s = Scheduler::new(ShardMap::unknown(), UNPACED);
    for i in 0..10u64 {
        s.push(entry(i, "hot"));
    }
    let now = Instant::now();
    let first = s.next_request(now, kpl(500, 1 << 20));
    assert_eq!(seqs(&first), (0..10).collect::<Vec<_>>());
    for i in 10..20u64 {
        s.push(entry(i, "hot"));
    }
    s.accepted(first.into_iter().next().unwrap());
    for i in 20..30u64 {
        s.push(entry(i, "hot"));
    }
    let second = s.next_request(now, kpl(500, 1 << 20));
    assert_eq!(second.len(), 1, "one unit of the key in flight");
    assert_eq!(seqs(&second), (10..30).collect::<Vec<_>>());
    assert_eq!(s.shards[0].ready.len(), 0, "no stale heap entries");
    assert!(s.next_request(now, kpl(500, 1 << 20)).is_empty());
}

/// A random walk over pushes, requests, and answers settled in any order (accepted,
/// failed with or without backoff, throttled), with truncate barriers on two tables
/// whose keys partly overlap (as one `fixed` key does): every record is accepted
/// exactly once, per key in push order, and no record passes its table's barrier.
fn random_walk(seed: u64, map: ShardMap, aggregate: bool) {
    let mut rng = seed.max(1);
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let limits = if aggregate { kpl(7, 200) } else { plain(7) };
    let mut w = Walk {
        s: Scheduler::new(map, UNPACED),
        seed,
        meta: Vec::new(),
        done: HashSet::new(),
        by_key: HashMap::default(),
    };
    let mut in_flight: Vec<Unit> = Vec::new();
    let mut now = Instant::now();
    for _ in 0..4000 {
        match next(6) {
            0 | 1 if w.meta.len() < 1500 => {
                let key = match next(4) {
                    0 | 1 => "hot".to_string(),
                    _ => format!("k{}", next(20)),
                };
                let mut record = Record::new(key, vec![b'x'; 1 + next(40) as usize]);
                record.table = next(2);
                record.barrier = next(50) == 0;
                w.meta.push((record.table, record.barrier));
                w.s.push(Entry::new(w.meta.len() as u64 - 1, record));
            }
            2 => in_flight.extend(w.send(now, limits)),
            _ if !in_flight.is_empty() => {
                let unit = in_flight.swap_remove(next(in_flight.len() as u64) as usize);
                match next(5) {
                    0 => w.s.failed(unit, None),
                    1 => {
                        w.s.failed(unit, Some(now + Duration::from_millis(next(30))))
                    }
                    2 => {
                        w.s.shard_throttled(unit.shard, now);
                        w.s.failed(unit, None);
                    }
                    _ => w.accept(unit),
                }
            }
            _ => now += Duration::from_millis(5),
        }
    }
    for _ in 0..100_000 {
        if w.s.is_empty() && in_flight.is_empty() {
            break;
        }
        now += Duration::from_millis(100);
        in_flight.extend(w.send(now, limits));
        for unit in std::mem::take(&mut in_flight) {
            w.accept(unit);
        }
    }
    assert_eq!(
        w.done.len(),
        w.meta.len(),
        "seed {seed}: every record accepted once"
    );
    for (key, seqs) in &w.by_key {
        assert!(
            seqs.windows(2).all(|p| p[0] < p[1]),
            "seed {seed}: key {key} out of order: {seqs:?}"
        );
    }
    assert_eq!(w.s.held_bytes(), 0);
}

struct Walk {
    s: Scheduler,
    seed: u64,
    /// Per pushed record, by sequence number: (table, barrier).
    meta: Vec<(u64, bool)>,
    done: HashSet<u64>,
    by_key: HashMap<String, Vec<u64>>,
}

impl Walk {
    /// Take a request; a barrier may go only once every earlier record of its table
    /// was accepted, any record only once every earlier barrier of its table was.
    fn send(&mut self, now: Instant, limits: Limits) -> Vec<Unit> {
        let units = self.s.next_request(now, limits);
        for e in units.iter().flat_map(|u| u.members.iter()) {
            let (table, barrier) = self.meta[e.seq as usize];
            for earlier in 0..e.seq {
                let (t, b) = self.meta[earlier as usize];
                if t == table && (barrier || b) {
                    assert!(
                        self.done.contains(&earlier),
                        "seed {}: record {} of table {table} went before {earlier} was accepted",
                        self.seed,
                        e.seq
                    );
                }
            }
        }
        units
    }

    fn accept(&mut self, unit: Unit) {
        for e in &unit.members {
            assert!(
                self.done.insert(e.seq),
                "seed {}: {} accepted twice",
                self.seed,
                e.seq
            );
            self.by_key
                .entry(e.record.partition_key.clone())
                .or_default()
                .push(e.seq);
        }
        self.s.accepted(unit);
    }
}

#[test]
fn random_walks_keep_per_key_order_and_truncate_barriers_and_lose_nothing() {
    for seed in 1..40 {
        random_walk(seed, ShardMap::unknown(), false);
        random_walk(seed, ShardMap::unknown(), true);
        random_walk(seed, four_shards(), false);
        random_walk(seed, four_shards(), true);
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
