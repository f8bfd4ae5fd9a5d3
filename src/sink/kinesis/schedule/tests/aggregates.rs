//! Scheduler tests of KPL aggregates: in key order, within their size, packing keys of
//! one shard only when the layout is known, resent whole, and readying each key once.

use super::*;

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
            assert_eq!(
                s.keys.slot(member.hash),
                Some(member.key_slot as usize),
                "an aggregated record carries its key's slot"
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
