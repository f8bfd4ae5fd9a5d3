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
//!
//! Shared here: the delivery case (database, stub in model mode, running pipeline), the
//! truth builders and the delivery check; the tests sit in one submodule per property.

mod batching;
mod isolation;
mod order;

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::run::Pipeline;

use crate::support::case::{streaming_in_process, wraps_case, Case};
use crate::support::kinesis::{verify, Verdict};
use crate::support::pg;
use crate::support::stub::{KinesisStub, StubUserRecord};

const SHARDS: u32 = 4;
/// Per call, as the model: real Kinesis answers in 10-40 ms.
const LATENCY: Duration = Duration::from_millis(10);
/// A quarter of Kinesis' per-shard limits: throttling happens with few rows.
const SCALE: f64 = 0.25;
/// How long a test waits for everything to arrive.
const DRAIN: Duration = Duration::from_secs(25);

/// One test's [`Case`] (database, table(s), slot, stream), stub and running pipeline.
struct Delivery {
    case: Case<'static>,
    stub: KinesisStub,
    pipeline: Option<Pipeline>,
    _dir: tempfile::TempDir,
}

wraps_case!(Delivery);

impl Delivery {
    /// Creates the database with `schema` (SQL), a 4-shard stream on a stub in model
    /// mode, and starts one slot streaming the database with `extra` slot settings
    /// (YAML lines, 6-space indented).
    async fn start(name: &str, schema: &str, extra: &str) -> Delivery {
        Delivery::open(name, schema, extra, true).await
    }

    /// [`Delivery::start`] against a stub that answers at once, without limits.
    async fn start_fast(name: &str, schema: &str, extra: &str) -> Delivery {
        Delivery::open(name, schema, extra, false).await
    }

    async fn open(name: &str, schema: &str, extra: &str, model: bool) -> Delivery {
        let case = Case::new(pg::shared(), &format!("dlv_{name}")).with_sql(schema);
        let stub = KinesisStub::with_seed(0xd1);
        stub.create_stream(&case.stream, SHARDS);
        if model {
            stub.model_kinesis(LATENCY, SCALE);
        }
        let slot = case.slot_yaml(case.pg.port, "", &["status_interval_secs: 1"]);
        let (pipeline, dir) =
            streaming_in_process(&format!("{slot}{extra}"), stub.sdk_config()).await;
        Delivery {
            case,
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
        self.case.cleanup();
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
