//! Snapshots and backfills against real PostgreSQL 15 + wal2json and kinesalite: the
//! initial snapshot under a concurrent workload (updates, deletes, re-inserts, key
//! changes, unchanged TOAST), its resumption after SIGKILLs (checkpoints in moto's
//! SSM), the `backfill` command and the admin Lambda's action, a table without a
//! key, and Kinesis throttling (the stub). Every check reads the stream back.
//!
//! Shared here: the fixture (tables, stream, config), the background workload and the
//! waits; `replay.rs` replays a stream by key; the tests sit in one submodule per theme.

mod commands;
mod replay;
mod resume;
mod snapshot;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::run::Pipeline;
use pg_cdc_to_kinesis::source;
use serde_json::Value;

use crate::support::case::{config_yaml, load, wraps_case, Case};
use crate::support::kinesis::{self, kinesalite};
use crate::support::pg::{self, SUPERUSER};

use replay::{differences, replay, user_records, Replay};

/// How long the stream may take to show a table's final contents.
const SETTLE: Duration = Duration::from_secs(120);

/// A column large enough to be stored out of line (TOAST), uncompressed.
fn big_value(id: i64, version: u32) -> String {
    format!("{id}-{version}-{}", "x".repeat(3000))
}

/// A database with `tables` (id int primary key, v text, big text stored out of
/// line) holding `rows` rows each, and a stream of two shards.
struct Fixture {
    case: Case<'static>,
    tables: Vec<String>,
}

wraps_case!(Fixture);

impl Fixture {
    async fn new(prefix: &str, tables: &[&str], rows: i64) -> Fixture {
        let case = Case::new(pg::shared(), prefix);
        for t in tables {
            case.pg.execute(
                &case.db,
                &format!(
                    "CREATE TABLE {t} (id bigint PRIMARY KEY, v text, big text);
                     ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL;
                     INSERT INTO {t} SELECT g, 'v' || g, CASE WHEN g % 50 = 0 THEN g || '-0-' || repeat('x', 3000) END
                       FROM generate_series(1, {rows}) g;"
                ),
            );
        }
        case.kinesalite_stream(2).await;
        Fixture {
            case,
            tables: tables.iter().map(|t| t.to_string()).collect(),
        }
    }

    fn add_tables(&self) -> String {
        self.tables
            .iter()
            .map(|t| format!("public.{t}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn config(&self, extra: &str) -> (Config, tempfile::TempDir) {
        let options = format!("{{add-tables: '{}'}}", self.add_tables());
        load(&config_yaml(
            &[(&self.slot, &self.db, &options, &self.stream)],
            extra,
        ))
    }

    async fn client(&self) -> tokio_postgres::Client {
        source::sql_connect(&pg::shared().connect_params(SUPERUSER, &self.db))
            .await
            .unwrap()
    }

    /// Each table's rows now: key → (v, big).
    async fn contents(&self) -> BTreeMap<String, (Option<String>, Option<String>)> {
        let c = self.client().await;
        let mut out = BTreeMap::new();
        for t in &self.tables {
            for row in c
                .query(&format!("SELECT id, v, big FROM {t}"), &[])
                .await
                .unwrap()
            {
                let id: i64 = row.get(0);
                out.insert(format!("public.{t}|{id}"), (row.get(1), row.get(2)));
            }
        }
        out
    }
}

/// Random updates, deletes, re-inserts, key changes and TOAST changes on `tables`
/// (ids 1..=rows) until `stop`; counts the statements.
async fn workload(
    client: tokio_postgres::Client,
    tables: Vec<String>,
    rows: i64,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut version = 1u32;
    while !stop.load(Ordering::Relaxed) {
        let t = &tables[(next() % tables.len() as u64) as usize];
        let id = (next() % rows as u64) as i64 + 1;
        version += 1;
        let sql = match next() % 6 {
            0 => format!("UPDATE {t} SET v = 'u{version}' WHERE id = {id}"),
            1 => format!("DELETE FROM {t} WHERE id = {id}"),
            2 => format!("INSERT INTO {t} VALUES ({id}, 'r{version}', NULL) ON CONFLICT (id) DO UPDATE SET v = 'c{version}'"),
            // A key change: the row moves far away, or back.
            3 => format!("UPDATE {t} SET id = CASE WHEN id > 10000000 THEN id - 10000000 ELSE id + 10000000 END WHERE id IN ({id}, {})", id + 10_000_000),
            // A TOASTed row updated without touching its big column.
            4 => format!("UPDATE {t} SET v = 't{version}' WHERE id = {}", (id / 50).max(1) * 50),
            _ => format!("UPDATE {t} SET big = '{}' WHERE id = {id}", big_value(id, version)),
        };
        // A key change can collide with a row already there: skip that one.
        let _ = client.batch_execute(&sql).await;
        done.fetch_add(1, Ordering::Relaxed);
        // About 200 statements a second: a busy table, not a flood.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The workload, running in the background.
struct Load {
    stop: Arc<AtomicBool>,
    done: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    async fn start(f: &Fixture, rows: i64) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let done = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(workload(
            f.client().await,
            f.tables.clone(),
            rows,
            stop.clone(),
            done.clone(),
        ));
        Load { stop, done, task }
    }

    /// Stops it; the statements it ran.
    async fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.unwrap();
        self.done.load(Ordering::Relaxed)
    }
}

/// Waits until the slot's backfills read rows and none remains.
async fn wait_backfilled(pipeline: &Pipeline, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let m = &pipeline.slots[0].metrics;
    let mut report = Instant::now();
    loop {
        if m.backfill_rows_read() > 0 && m.backfill_tables_remaining() == 0 {
            return;
        }
        if report.elapsed() > Duration::from_secs(5) {
            report = Instant::now();
            eprintln!(
                "backfill progress: {} rows read, {:?}, {} records put",
                m.backfill_rows_read(),
                m.backfill_lines(),
                pipeline.slots[0].stats.records_put.load(Ordering::Relaxed)
            );
        }
        assert!(
            Instant::now() < deadline,
            "backfill not finished after {timeout:?}: {:?}",
            m.backfill_lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the stream until replaying it gives the tables' contents (or `SETTLE`).
async fn settled(f: &Fixture) -> (Replay, Vec<String>) {
    settled_from(f, || async {
        user_records(&kinesis::read_all(&kinesalite().client(), &f.stream).await)
    })
    .await
}

/// [`settled`] with the stream's user records from `read`.
async fn settled_from<F, Fut>(f: &Fixture, read: F) -> (Replay, Vec<String>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<(String, Value)>>,
{
    let tables = f.contents().await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let r = replay(&read().await);
        let diff = differences(&r.rows, &tables);
        if diff.is_empty() || Instant::now() > deadline {
            return (r, diff);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn assert_consistent(r: &Replay, diff: &[String], what: &str) {
    // The differing keys' records, and the other checks' findings, in one message.
    let traces: Vec<String> = diff
        .iter()
        .take(3)
        .filter_map(|d| d.split([' ', ':']).next())
        .map(|key| format!("{key}: {:?}", r.trace.get(key)))
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: the stream does not replay to the tables ({} differences): {:?}\n\
         records of those keys on the stream: {traces:#?}\n\
         stale reads: {:?}\norder violations: {:?}",
        diff.len(),
        &diff[..diff.len().min(10)],
        &r.stale_reads[..r.stale_reads.len().min(5)],
        &r.order_violations[..r.order_violations.len().min(5)]
    );
    assert!(
        r.order_violations.is_empty(),
        "{what}: per-key order violated: {:?}",
        &r.order_violations[..r.order_violations.len().min(5)]
    );
    assert!(
        r.stale_reads.is_empty(),
        "{what}: {} read record(s) older than a change before them: {:?}",
        r.stale_reads.len(),
        &r.stale_reads[..r.stale_reads.len().min(5)]
    );
}
