//! The scheduler's random-walk test: pushes, requests and answers settled in any
//! order never break per-key order or a truncate barrier and never lose a record.

use std::collections::HashSet;

use super::*;

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
