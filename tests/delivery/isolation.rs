//! One busy part does not hold back the others: a hot table beside cold tables in the
//! same slot, and a throttled shard beside the other shards.

use std::time::{Duration, Instant};

use crate::support::pg;
use crate::support::stub::StubUserRecord;

use super::*;

/// The hot table has no primary key, so all its changes share one partition key and
/// go one at a time; its backlog is committed first. The cold tables' changes,
/// committed after it, must not wait for that backlog: all of them arrive while most
/// of the hot table's changes are still to come. `batch_max_records: 50` makes the
/// backlog larger than any window a sink scans or buffers per batch size (a windowed
/// scheduler sees 8 x 50 entries and buffers 4 x 50 x max_in_flight), with few rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_table_does_not_hold_back_cold_tables_in_the_same_slot() {
    const HOT_ROWS: u64 = 800;
    let mut schema = table("hot", false);
    for t in 0..3 {
        schema += &table(&format!("cold{t}"), true);
    }
    let d = Delivery::start("hotcold", &schema, "      batch_max_records: 50\n").await;
    let (mut sql, mut truth) = versions("hot", HOT_ROWS, 1);
    let mut cold_truth = Vec::new();
    for t in 0..3 {
        let (cold_sql, rows) = versions(&format!("cold{t}"), 20, 2);
        sql += "\n";
        sql += &cold_sql;
        cold_truth.extend(rows);
    }
    // One psql for all of it (each statement still commits on its own): a slow start
    // of a second psql on a busy machine must not let the hot table run ahead.
    d.execute(&sql);
    truth.extend(cold_truth.iter().cloned());
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("hot+cold", &truth, &records);

    let is_cold =
        |r: &StubUserRecord| row_version(&r.data).is_some_and(|(k, _)| k.starts_with("cold"));
    let last_cold = records
        .iter()
        .rposition(is_cold)
        .unwrap_or_else(|| panic!("no cold change arrived"));
    let hot_before = records[..last_cold].iter().filter(|r| !is_cold(r)).count();
    eprintln!(
        "delivery hot+cold: the last of {} cold changes arrived after {hot_before} of {HOT_ROWS} hot ones",
        cold_truth.len()
    );
    assert!(
        (hot_before as u64) < HOT_ROWS / 4,
        "the cold tables waited behind the hot table: their last change arrived after {hot_before} of \
         {HOT_ROWS} hot changes"
    );
    d.stop().await;
}

/// Shard 0 fails every record for longer than the whole workload takes; changes keep
/// being committed meanwhile (20 transactions, 200 ms apart). The records of the other
/// shards must all be accepted while shard 0 is still throttled, each within
/// [`OTHERS_MAX_DELAY`] of its commit, and shard 0's once it recovers: a throttle on
/// one shard must not pause the others. (A slot-wide backoff waits up to 5 s between
/// requests after a few throttled answers.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_shard_does_not_slow_the_other_shards() {
    const THROTTLE: Duration = Duration::from_secs(10);
    const TXNS: u64 = 20;
    const PER_TXN: u64 = 30;
    const OTHERS_MAX_DELAY: Duration = Duration::from_secs(2);
    let schema = format!(
        "{}CREATE PROCEDURE load() LANGUAGE plpgsql AS $$ BEGIN \
         FOR b IN 0..{last} LOOP \
           INSERT INTO acct SELECT g, 0, repeat('x', 200) FROM generate_series(b * {PER_TXN} + 1, (b + 1) * {PER_TXN}) g; \
           COMMIT; PERFORM pg_sleep(0.2); \
         END LOOP; END $$;",
        table("acct", true),
        last = TXNS - 1
    );
    let d = Delivery::start("throttle", &schema, "").await;
    d.stub.clear_shard_limits();
    let truth: Vec<(String, u64)> = (1..=TXNS * PER_TXN)
        .map(|id| (format!("acct|{id}"), 0))
        .collect();
    let throttled = d.stub.open_shards(&d.stream)[0].clone();
    d.stub.throttle_shard(&d.stream, 0, THROTTLE);
    let throttle_began = Instant::now();
    let db = d.db.clone();
    tokio::task::spawn_blocking(move || pg::shared().execute(&db, "CALL load()"))
        .await
        .unwrap_or_else(|e| panic!("load: {e}"));
    let loaded = throttle_began.elapsed();
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("throttled shard", &truth, &records);

    let shards = d.stub.shard_stats(&d.stream);
    let others: Vec<&StubUserRecord> = records.iter().filter(|r| r.shard_id != throttled).collect();
    let during = others
        .iter()
        .filter(|r| r.arrived < throttle_began + THROTTLE)
        .count();
    let slowest = others
        .iter()
        .map(|r| r.commit_to_acceptance().unwrap_or(Duration::MAX))
        .max()
        .unwrap_or_default();
    eprintln!(
        "delivery throttled shard: loaded in {loaded:?}; {during} of {} records of the other shards arrived \
         during the {THROTTLE:?} throttle, the slowest {slowest:?} after its commit",
        others.len()
    );
    assert!(
        loaded < THROTTLE,
        "the workload took {loaded:?}, longer than the throttle: the machine is too busy for this test"
    );
    let on_throttled = shards
        .iter()
        .find(|s| s.shard_id == throttled)
        .map_or(0, |s| s.throttled_records);
    assert!(
        on_throttled > 0,
        "shard {throttled} was never throttled: {shards:?}"
    );
    assert!(
        slowest < OTHERS_MAX_DELAY,
        "a record of an unthrottled shard arrived {slowest:?} after its commit while {throttled} was throttled"
    );
    for s in shards.iter().filter(|s| s.shard_id != throttled) {
        assert_eq!(
            s.accepted_during_other_throttle, s.accepted_records,
            "shard {} had records accepted only after {throttled}'s throttle ended: {shards:?}",
            s.shard_id
        );
    }
    d.stop().await;
}
