//! Delivery at the speed of real Kinesis: the pipeline (in process) against the stub in
//! model mode (latency per call, 4 shards with MD5 routing, per-shard limits scaled
//! down so the tests stay quick), with PostgreSQL as the ground truth. Each test
//! asserts nothing lost and per-key order kept, both by the verifier (per row) and by
//! the stub's own order check on arrival (per partition key), plus the one property
//! its setup exists for: hot keys, aggregation, a hot table beside cold ones, or a
//! throttled shard.
//!
//! The properties of the per-shard sink (issue 10) are asserted on arrival order and
//! counts; the throttled-shard test also bounds how long after its commit a record of
//! an unthrottled shard may arrive, generously (2 s, where a slot-wide backoff takes 5).

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::kinesis::{unique_stream_name, verify, Verdict};
use crate::support::pg::{self, password_for, unique_name, SUPERUSER};
use crate::support::stub::{KinesisStub, RecordError, StubUserRecord};

const SHARDS: u32 = 4;
/// Per call, as the model: real Kinesis answers in 10-40 ms.
const LATENCY: Duration = Duration::from_millis(10);
/// A quarter of Kinesis' per-shard limits: throttling happens with few rows.
const SCALE: f64 = 0.25;
/// How long a test waits for everything to arrive.
const DRAIN: Duration = Duration::from_secs(25);

/// One test's database, table(s), slot, stream, stub and running pipeline.
struct Delivery {
    db: String,
    slot: String,
    stream: String,
    stub: KinesisStub,
    pipeline: Option<Pipeline>,
    _dir: tempfile::TempDir,
}

impl Delivery {
    /// Creates the database with `schema` (SQL), a 4-shard stream on a stub in model
    /// mode, and starts one slot streaming the database with `extra` slot settings
    /// (YAML lines, 6-space indented).
    async fn start(name: &str, schema: &str, extra: &str) -> Delivery {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(&format!("dlv_{name}")));
        pg.execute(&db, schema);
        let slot = unique_name(&format!("dlv_{name}"));
        let stream = unique_stream_name(&format!("dlv-{name}"));
        let stub = KinesisStub::with_seed(0xd1);
        stub.create_stream(&stream, SHARDS);
        stub.model_kinesis(LATENCY, SCALE);
        let yaml = format!(
            "replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {port}\n      user: {SUPERUSER}\n      \
             password: {pw}\n      db_name: {db}\n      kns_stream: {stream}\n      status_interval_secs: 1\n{extra}",
            port = pg.port,
            pw = password_for(SUPERUSER).unwrap_or_default(),
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let path = dir.path().join("configs.yml");
        std::fs::write(&path, &yaml).unwrap_or_else(|e| panic!("write config: {e}"));
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let pipeline = Pipeline::start(
            &config,
            &RunEnv {
                aws: stub.sdk_config(),
            },
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for status in &pipeline.slots {
            while status.state() != SlotState::Streaming {
                assert!(
                    Instant::now() < deadline,
                    "slot {} did not start: {:?}",
                    status.slot,
                    status.state()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Delivery {
            db,
            slot,
            stream,
            stub,
            pipeline: Some(pipeline),
            _dir: dir,
        }
    }

    fn execute(&self, sql: &str) {
        pg::shared().execute(&self.db, sql);
    }

    /// Waits until `n` user records arrived (or [`DRAIN`] passes); returns them all.
    async fn wait_for(&self, n: usize) -> Vec<StubUserRecord> {
        let deadline = Instant::now() + DRAIN;
        while self.stub.stream_stats(&self.stream).user_records < n as u64
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stub.user_records(&self.stream)
    }

    /// Checks `records` against `truth`, and the stub's per-key order check; prints
    /// the figures.
    #[track_caller]
    fn assert_delivered(
        &self,
        name: &str,
        truth: &[(String, u64)],
        records: &[StubUserRecord],
    ) -> Verdict {
        let verdict = verify(truth, records, |r: &StubUserRecord| row_version(&r.data));
        let stats = self.stub.stream_stats(&self.stream);
        let shards: Vec<(u64, u64)> = self
            .stub
            .shard_stats(&self.stream)
            .iter()
            .map(|s| (s.accepted_records, s.throttled_records))
            .collect();
        eprintln!(
            "delivery {name}: {verdict}; stub: records={} user_records={} aggregates={} throttled={} \
             order_violations={} duplicates={}; per shard (accepted, throttled): {shards:?}",
            stats.accepted_records,
            stats.user_records,
            stats.aggregated_records,
            stats.throttled_records,
            stats.order_violations,
            stats.duplicates
        );
        verdict.assert_at_least_once_in_order();
        assert_eq!(
            stats.order_violations, 0,
            "{name}: the stub saw (commit_lsn, seq) go backwards for a partition key"
        );
        verdict
    }

    async fn stop(mut self) {
        if let Some(pipeline) = self.pipeline.take() {
            pipeline.stop();
            pipeline
                .wait()
                .await
                .unwrap_or_else(|e| panic!("pipeline: {e}"));
        }
        let pg = pg::shared();
        let _ = pg.try_psql_in(
            &self.db,
            &format!("SELECT pg_drop_replication_slot('{}')", self.slot),
        );
        let _ = pg.try_psql_in(
            "postgres",
            &format!("DROP DATABASE \"{}\" WITH (FORCE)", self.db),
        );
    }
}

/// `("table|id", version)` of a record in the streamer's format.
fn row_version(data: &[u8]) -> Option<(String, u64)> {
    let v: serde_json::Value = serde_json::from_slice(data).ok()?;
    Some((
        format!("{}|{}", v["table"].as_str()?, v["data"]["id"].as_u64()?),
        v["data"]["version"].as_u64()?,
    ))
}

/// A table `name` (with or without a primary key) of `rows` rows written `versions`
/// times: one INSERT transaction, then one UPDATE of every row per further version.
/// Returns the SQL (one transaction per statement) and the truth in commit order.
fn versions(name: &str, rows: u64, versions: u64) -> (String, Vec<(String, u64)>) {
    let mut sql = format!(
        "INSERT INTO {name} SELECT g, 0, repeat('x', 200) FROM generate_series(1, {rows}) g;\n"
    );
    let mut truth: Vec<(String, u64)> = (1..=rows).map(|id| (format!("{name}|{id}"), 0)).collect();
    for v in 1..versions {
        sql += &format!("UPDATE {name} SET version = {v};\n");
        truth.extend((1..=rows).map(|id| (format!("{name}|{id}"), v)));
    }
    (sql, truth)
}

fn table(name: &str, primary_key: bool) -> String {
    let pk = if primary_key { " PRIMARY KEY" } else { "" };
    // FULL: a table without a primary key still sends its rows' identity on UPDATE.
    format!(
        "CREATE TABLE {name} (id int{pk}, version int NOT NULL, pad text);\n\
         ALTER TABLE {name} REPLICA IDENTITY FULL;\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_keys_arrive_complete_and_in_key_order_through_throttling_shards() {
    let d = Delivery::start("distinct", &table("acct", true), "").await;
    let (sql, truth) = versions("acct", 500, 4);
    d.execute(&sql);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("distinct", &truth, &records);
    let shards = d.stub.shard_stats(&d.stream);
    assert!(
        shards.iter().all(|s| s.accepted_records > 0),
        "distinct keys should spread over all {SHARDS} shards: {shards:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hot_partition_key_arrives_complete_and_in_order() {
    let d = Delivery::start("hot", &table("hot", true), "      partition_key: table\n").await;
    let (sql, truth) = versions("hot", 100, 3);
    d.execute(&sql);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("hot", &truth, &records);
    let keys: std::collections::BTreeSet<_> =
        records.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "partition_key: table makes one key: {keys:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_carry_every_change_in_key_order() {
    let schema = format!("{}{}", table("agg_hot", false), table("agg_rows", true));
    // Paced at the model's scale: an aggregate carries a hot key's backlog up to the
    // shard's byte allowance, and one larger than the model's shard takes in a second
    // would be throttled each time it is resent.
    let d = Delivery::start(
        "kpl",
        &schema,
        "      aggregation: kpl\n      shard_records_per_sec: 250\n      shard_bytes_per_sec: 262144\n",
    )
    .await;
    let (hot_sql, mut truth) = versions("agg_hot", 300, 3);
    let (rows_sql, rows_truth) = versions("agg_rows", 500, 2);
    d.execute(&hot_sql);
    d.execute(&rows_sql);
    truth.extend(rows_truth);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("kpl", &truth, &records);
    let stats = d.stub.stream_stats(&d.stream);
    assert!(
        stats.aggregated_records > 0 && stats.accepted_records < stats.user_records,
        "aggregation: kpl should pack many changes per Kinesis record: {stats:?}"
    );
    // Each change keeps its own partition key inside the aggregate.
    let keys: std::collections::BTreeSet<_> = records
        .iter()
        .filter(|r| r.aggregated)
        .map(|r| r.partition_key.as_str())
        .collect();
    assert!(
        keys.len() > 100,
        "the 500 rows of agg_rows have their own keys, but the aggregates carried {} distinct keys",
        keys.len()
    );
    d.stop().await;
}

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
    let (hot_sql, mut truth) = versions("hot", HOT_ROWS, 1);
    d.execute(&hot_sql);
    let mut cold_truth = Vec::new();
    for t in 0..3 {
        let (sql, rows) = versions(&format!("cold{t}"), 20, 2);
        d.execute(&sql);
        cold_truth.extend(rows);
    }
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

/// A TRUNCATE is a barrier for its table, through 30% failed records and the model's
/// throttling, with and without aggregation: it arrives after every earlier change of
/// the table and before every later one, although those changes have other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_arrives_after_the_tables_earlier_changes_and_before_its_later_ones() {
    for (name, extra) in [("trunc", ""), ("trunc_kpl", "      aggregation: kpl\n")] {
        let d = Delivery::start(name, &table("tr", true), extra).await;
        d.stub.fail_records(0.3, RecordError::Mixed);
        d.execute(
            "INSERT INTO tr SELECT g, 0, 'before' FROM generate_series(1, 300) g;\n\
             TRUNCATE tr;\n\
             INSERT INTO tr SELECT g, 1, 'after' FROM generate_series(1, 300) g;",
        );
        let records = d.wait_for(601).await;
        d.stub.fail_records(0.0, RecordError::Mixed);
        let kinds: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
                let pad = v["data"]["pad"].as_str().unwrap_or("").to_string();
                (v["kind"].as_str().unwrap_or("").to_string(), pad)
            })
            .collect();
        let truncates: Vec<usize> = (0..kinds.len())
            .filter(|&i| kinds[i].0 == "truncate")
            .collect();
        assert_eq!(
            truncates.len(),
            1,
            "{name}: one truncate arrived: {kinds:?}"
        );
        let at = truncates[0];
        let before = kinds[..at].iter().filter(|k| k.1 == "before").count();
        let after = kinds[at + 1..].iter().filter(|k| k.1 == "after").count();
        assert_eq!(
            before, 300,
            "{name}: every earlier row arrived before the truncate"
        );
        assert_eq!(
            after, 300,
            "{name}: every later row arrived after the truncate"
        );
        assert!(
            kinds[..at].iter().all(|k| k.1 != "after"),
            "{name}: no later row overtook the truncate"
        );
        assert!(
            d.stub.stream_stats(&d.stream).throttled_records + d.stub.stats().failed_records > 0,
            "{name}: the stub failed records on the way"
        );
        d.stop().await;
    }
}
