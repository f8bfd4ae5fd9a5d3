//! Snapshots and backfills against real PostgreSQL 15 + wal2json and kinesalite: the
//! initial snapshot under a concurrent workload (updates, deletes, re-inserts, key
//! changes, unchanged TOAST), its resumption after SIGKILLs (checkpoints in moto's
//! SSM), the `backfill` command and the admin Lambda's action, a table without a
//! key, and Kinesis throttling (the stub). Every check reads the stream back.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::sink::kinesis::aggregate::deaggregate;
use pg_cdc_to_kinesis::source;
use serde_json::{Map, Value};

use crate::support::case::{config_yaml, drop_slot, load, wait_state};
use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::pg::{self, unique_name, SUPERUSER};

const STARTUP: Duration = Duration::from_secs(30);
/// How long the stream may take to show a table's final contents.
const SETTLE: Duration = Duration::from_secs(120);

/// A column large enough to be stored out of line (TOAST), uncompressed.
fn big_value(id: i64, version: u32) -> String {
    format!("{id}-{version}-{}", "x".repeat(3000))
}

/// A database with `tables` (id int primary key, v text, big text stored out of
/// line) holding `rows` rows each, and a stream of two shards.
struct Fixture {
    db: String,
    slot: String,
    stream: String,
    tables: Vec<String>,
}

impl Fixture {
    async fn new(prefix: &str, tables: &[&str], rows: i64) -> Fixture {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(prefix));
        for t in tables {
            pg.execute(
                &db,
                &format!(
                    "CREATE TABLE {t} (id bigint PRIMARY KEY, v text, big text);
                     ALTER TABLE {t} ALTER COLUMN big SET STORAGE EXTERNAL;
                     INSERT INTO {t} SELECT g, 'v' || g, CASE WHEN g % 50 = 0 THEN g || '-0-' || repeat('x', 3000) END
                       FROM generate_series(1, {rows}) g;"
                ),
            );
        }
        let stream = unique_stream_name(prefix);
        kinesis::create_stream(&kinesalite().client(), &stream, 2).await;
        Fixture {
            db,
            slot: unique_name(prefix),
            stream,
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

/// Every user record of `records` (aggregates opened), in stream order per shard.
fn user_records(records: &[ReadRecord]) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for r in records {
        for u in deaggregate(&r.partition_key, &r.data).expect("a valid aggregate") {
            let v: Value = serde_json::from_slice(&u.data).expect("a JSON record");
            out.push((u.partition_key, v));
        }
    }
    out
}

/// What replaying the stream shows, and what it found wrong.
#[derive(Debug, Default)]
struct Replay {
    /// key → row (the record's `data`), for keys that exist at the end.
    rows: BTreeMap<String, Map<String, Value>>,
    reads: u64,
    changes: u64,
    /// A `read` that is older than a change before it of its key.
    stale_reads: Vec<String>,
    /// A key whose records arrived out of `(commit_lsn, seq)` order.
    order_violations: Vec<String>,
    /// Chunks that sent rows: (table, chunk) → reads.
    chunks: BTreeMap<(String, u64), u64>,
}

fn position(v: &Value) -> (Lsn, u64) {
    (
        v["commit_lsn"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or_default(),
        v["seq"].as_u64().unwrap_or_default(),
    )
}

/// Replays `records` in commit order, as a consumer applying them by key would. An
/// update that left out an unchanged TOASTed column keeps the column's value; the
/// insert half of a key change takes it from the row its delete half removed. A
/// `read` must equal a state its row had at or after the last change before it.
/// Per key, the stream order must be the commit order.
fn replay(records: &[(String, Value)]) -> Replay {
    let mut out = Replay::default();
    // Redelivery after a crash repeats records already seen: only an unseen record
    // behind a later one is out of order.
    let mut last_at: HashMap<&str, (Lsn, u64)> = HashMap::new();
    let mut seen_at: std::collections::HashSet<(&str, (Lsn, u64))> = Default::default();
    for (key, v) in records {
        let at = position(v);
        let repeat = !seen_at.insert((key.as_str(), at));
        if let Some(prev) = last_at.insert(key, at) {
            if prev >= at && !repeat {
                out.order_violations
                    .push(format!("{key}: {at:?} after {prev:?}"));
            }
        }
    }
    let mut sorted: Vec<&(String, Value)> = records.iter().collect();
    sorted.sort_by_key(|(_, v)| position(v));
    // A redelivered record is applied once.
    sorted.dedup_by_key(|(k, v)| (k.clone(), position(v)));
    let mut state: HashMap<String, Map<String, Value>> = HashMap::new();
    // Per key, the states it went through by changes (after each), for the reads.
    let mut history: HashMap<String, Vec<Option<Map<String, Value>>>> = HashMap::new();
    let mut reads: Vec<(String, usize, Map<String, Value>)> = Vec::new();
    // The row a key change's delete half removed, for its insert half.
    let mut moved: Option<Map<String, Value>> = None;
    for (key, v) in sorted {
        let data = v["data"].as_object().cloned().unwrap_or_default();
        let key_change = v["key_change"] == Value::Bool(true);
        match v["kind"].as_str().unwrap_or_default() {
            "read" => {
                out.reads += 1;
                let table = v["snapshot"]["table"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let chunk = v["snapshot"]["chunk"].as_u64().unwrap_or_default();
                *out.chunks.entry((table, chunk)).or_default() += 1;
                let before = history.get(key).map_or(0, Vec::len);
                reads.push((key.clone(), before, data.clone()));
                state.insert(key.clone(), data);
                continue;
            }
            "delete" => {
                let gone = state.remove(key);
                if key_change {
                    moved = gone;
                }
            }
            "insert" => {
                let mut row = data;
                if key_change {
                    for (c, value) in moved.take().unwrap_or_default() {
                        row.entry(c).or_insert(value);
                    }
                }
                state.insert(key.clone(), row);
            }
            "update" => {
                let row = state.entry(key.clone()).or_default();
                row.extend(data);
            }
            other => panic!("unexpected record kind {other:?}: {v}"),
        }
        out.changes += 1;
        history
            .entry(key.clone())
            .or_default()
            .push(state.get(key).cloned());
    }
    for (key, before, data) in reads {
        let states = history.get(&key).cloned().unwrap_or_default();
        let fresh = before == 0
            || states[before - 1..]
                .iter()
                .any(|s| s.as_ref().is_some_and(|s| same_row(s, &data)));
        if !fresh {
            out.stale_reads
                .push(format!("{key}: read {data:?} after {before} change(s)"));
        }
    }
    out.rows = state.into_iter().collect();
    out
}

/// Two rows alike where both have a column (a read has every column; a state built
/// from changes may lack a TOASTed column it never saw).
fn same_row(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.iter().all(|(k, v)| b.get(k).is_none_or(|w| w == v))
}

/// The stream's rows, compared with the tables: what is missing, extra or different.
fn differences(
    replayed: &BTreeMap<String, Map<String, Value>>,
    tables: &BTreeMap<String, (Option<String>, Option<String>)>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (key, (v, big)) in tables {
        match replayed.get(key) {
            None => out.push(format!("{key} missing from the stream")),
            Some(row) => {
                let text = |c: &str| row.get(c).and_then(|x| x.as_str()).map(str::to_string);
                if text("v") != *v {
                    out.push(format!(
                        "{key}: v {:?} on the stream, {v:?} in the table",
                        text("v")
                    ));
                }
                if text("big") != *big {
                    out.push(format!(
                        "{key}: big differs ({:?} bytes on the stream, {:?} in the table)",
                        text("big").map(|s| s.len()),
                        big.as_ref().map(|s| s.len())
                    ));
                }
            }
        }
    }
    for key in replayed.keys() {
        if !tables.contains_key(key) {
            out.push(format!("{key} on the stream but not in the table"));
        }
    }
    out
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
    assert!(
        diff.is_empty(),
        "{what}: the stream does not replay to the tables ({} differences): {:?}",
        diff.len(),
        &diff[..diff.len().min(10)]
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initial_snapshot_under_a_concurrent_workload_replays_to_the_tables() {
    const ROWS: i64 = 50_000;
    let f = Fixture::new("snap_initial", &["t1", "t2", "t3"], ROWS).await;
    let (config, _dir) = f.config(
        "      snapshot: initial\n      snapshot_chunk_rows: 5000\n      aggregation: kpl\n      checkpoint: false\n",
    );
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: kinesalite().sdk_config(),
        },
    );
    let state = wait_state(&pipeline.slots[0], STARTUP, |s| *s == SlotState::Streaming).await;
    assert_eq!(state, SlotState::Streaming);

    let load = Load::start(&f, ROWS).await;
    wait_backfilled(&pipeline, Duration::from_secs(300)).await;
    let statements = load.finish().await;
    let (r, diff) = settled(&f).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);

    eprintln!(
        "initial snapshot: {} read records in {} chunks, {} changes, {statements} workload statements",
        r.reads,
        r.chunks.len(),
        r.changes
    );
    assert!(
        statements > 100,
        "the workload ran during the snapshot ({statements})"
    );
    assert!(r.reads > 0 && r.changes > 0);
    assert_consistent(&r, &diff, "initial snapshot");
    // Every table was read in chunks of 5,000.
    for t in &f.tables {
        let chunks = r
            .chunks
            .keys()
            .filter(|(table, _)| *table == format!("public.{t}"))
            .count();
        assert!(chunks >= 10, "public.{t} read in {chunks} chunks");
    }
}

/// `(commit_lsn, seq)` of each record: unique, and stable for a dedupe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_records_match_live_records_of_the_same_row_and_carry_unique_positions() {
    for format in [1u8, 2] {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(&format!("snap_types_v{format}")));
        pg.execute(
            &db,
            "CREATE TABLE ty (a int, b text, id int, n numeric(40,10), f float8, nan float8, ok bool, ts timestamptz, j jsonb, arr int[], bin bytea, nothing text, PRIMARY KEY (id, a));
             INSERT INTO ty VALUES (1, 'quote \" and \\\\ and \t', 7, 12345678901234567890.1234567890, 1.5, 'NaN', true, '2026-01-02 03:04:05.123456+00', '{\"k\": [1, 2]}', '{1,2}', '\\x00ff', NULL);",
        );
        let slot = unique_name(&format!("snap_types_v{format}"));
        let stream = unique_stream_name("snap-types");
        kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
        let options = format!("{{format-version: {format}, add-tables: 'public.ty'}}");
        let (config, _dir) = load(&config_yaml(
            &[(&slot, &db, &options, &stream)],
            "      snapshot: initial\n      checkpoint: false\n",
        ));
        let pipeline = Pipeline::start(
            &config,
            &RunEnv {
                aws: kinesalite().sdk_config(),
            },
        );
        wait_backfilled(&pipeline, Duration::from_secs(60)).await;
        // The same row again, as a live insert.
        pg.execute(&db, "DELETE FROM ty; INSERT INTO ty SELECT * FROM (VALUES (1, 'quote \" and \\\\ and \t', 7, 12345678901234567890.1234567890::numeric, 1.5::float8, 'NaN'::float8, true, '2026-01-02 03:04:05.123456+00'::timestamptz, '{\"k\": [1, 2]}'::jsonb, '{1,2}'::int[], '\\x00ff'::bytea, NULL::text)) v;");
        let records =
            kinesis::read_until(&kinesalite().client(), &stream, 3, Duration::from_secs(30)).await;
        pipeline.stop();
        pipeline.wait().await.unwrap();
        drop_slot(&db, &slot);
        let recs = user_records(&records);
        let read = recs
            .iter()
            .find(|(_, v)| v["kind"] == "read")
            .expect("a read record");
        let insert = recs
            .iter()
            .find(|(_, v)| v["kind"] == "insert")
            .expect("an insert");
        assert_eq!(
            read.1["data"], insert.1["data"],
            "format {format}: a read row is printed as wal2json prints the row"
        );
        assert_eq!(
            serde_json::to_string(&read.1["data"]).unwrap(),
            serde_json::to_string(&insert.1["data"]).unwrap()
        );
        assert_eq!(read.0, insert.0, "format {format}: the same partition key");
        assert_eq!(
            read.1["snapshot"],
            serde_json::json!({"table": "public.ty", "chunk": 1})
        );
        let commit: Lsn = read.1["commit_lsn"].as_str().unwrap().parse().unwrap();
        assert!(commit > Lsn::ZERO);
        assert!(read.1["seq"].is_u64());
        let mut positions: Vec<(String, u64)> = recs
            .iter()
            .map(|(_, v)| {
                (
                    v["commit_lsn"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let n = positions.len();
        positions.sort();
        positions.dedup();
        assert_eq!(positions.len(), n, "(commit_lsn, seq) is unique");
    }
}

/// A fixture's rows on the stream: `(table, id)` of each read record, and the
/// error lines of the log.
fn reads_by_table(records: &[ReadRecord]) -> BTreeMap<String, Vec<i64>> {
    let mut out: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (_, v) in user_records(records) {
        if v["kind"] == "read" {
            let table = format!(
                "{}.{}",
                v["schema"].as_str().unwrap(),
                v["table"].as_str().unwrap()
            );
            out.entry(table)
                .or_default()
                .push(v["data"]["id"].as_i64().unwrap());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn backfill_from_the_cli_and_the_lambda_reaches_the_streamer_for_the_named_tables_only() {
    let f = Fixture::new("snap_cli", &["a", "b", "nokey"], 300).await;
    let pg = pg::shared();
    // A table with neither a primary key nor a unique index on NOT NULL columns.
    pg.execute(&f.db, "ALTER TABLE nokey DROP CONSTRAINT nokey_pkey");
    let (config, dir) = f.config("      checkpoint: false\n      snapshot_chunk_rows: 100\n");
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: kinesalite().sdk_config(),
        },
    );
    let state = wait_state(&pipeline.slots[0], STARTUP, |s| *s == SlotState::Streaming).await;
    assert_eq!(state, SlotState::Streaming);

    // The command line: table a, rows with id > 250 only, and the keyless table.
    let path = dir.path().join("configs.yml");
    let done = crate::support::process::run(
        crate::support::process::command(
            &kinesalite().endpoint,
            &[
                "backfill",
                "--config",
                path.to_str().unwrap(),
                "--slot",
                &f.slot,
                "--table",
                "public.nokey",
                "--table",
                "public.a",
                "--where",
                "id > 250",
            ],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(done.code, Some(0), "{}", done.describe());
    assert!(
        done.stdout.contains("backfill signalled"),
        "{}",
        done.describe()
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reads = BTreeMap::new();
    while Instant::now() < deadline {
        reads = reads_by_table(&kinesis::read_all(&kinesalite().client(), &f.stream).await);
        if reads.get("public.a").is_some_and(|ids| ids.len() >= 50) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut a = reads.get("public.a").cloned().unwrap_or_default();
    a.sort();
    assert_eq!(
        a,
        (251..=300).collect::<Vec<_>>(),
        "only table a's rows with id > 250"
    );
    assert!(!reads.contains_key("public.b"), "b was not named");
    assert!(
        !reads.contains_key("public.nokey"),
        "nokey cannot be read in key order"
    );
    let lines = pipeline.slots[0].metrics.backfill_lines();
    assert!(
        lines.iter().any(|l| l.contains("public.nokey")
            && l.contains("failed")
            && l.contains("has no primary key")
            && l.contains("ADD PRIMARY KEY")),
        "{lines:?}"
    );

    // The admin Lambda: table b, all rows.
    let ctx = pg_cdc_to_kinesis::admin::AdminContext {
        aws: kinesalite().sdk_config(),
        namespace: "Test".into(),
        metrics_out: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    let report = pg_cdc_to_kinesis::admin::handle(
        &config,
        &ctx,
        serde_json::json!({"action": "backfill", "slot": f.slot, "tables": ["public.b"]}),
    )
    .await
    .unwrap();
    assert_eq!(report["requested"], true, "{report}");
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        reads = reads_by_table(&kinesis::read_all(&kinesalite().client(), &f.stream).await);
        if reads.get("public.b").is_some_and(|ids| ids.len() >= 300) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let mut b = reads.get("public.b").cloned().unwrap_or_default();
    b.sort();
    assert_eq!(b, (1..=300).collect::<Vec<_>>());
    assert_eq!(reads["public.a"].len(), 50, "a was not read again");
    // A slot that is not configured is refused without writing anything.
    let refused = pg_cdc_to_kinesis::admin::handle(
        &config,
        &ctx,
        serde_json::json!({"action": "backfill", "slot": "nope", "tables": ["public.b"]}),
    )
    .await
    .unwrap();
    assert_eq!(refused["requested"], false);
    assert!(
        refused["error"].as_str().unwrap().contains("no slot"),
        "{refused}"
    );
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);
}

/// The checkpoint's backfill progress: table → chunks accepted.
async fn checkpointed_chunks(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> (BTreeMap<String, u64>, bool) {
    let Ok(out) = ssm.get_parameter().name(parameter).send().await else {
        return (BTreeMap::new(), false);
    };
    let text = out.parameter().and_then(|p| p.value()).unwrap_or("{}");
    let v: Value = serde_json::from_str(text).unwrap();
    let b = &v["backfill"];
    let mut out = BTreeMap::new();
    for job in b["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(b["last"].as_object().map(|_| &b["last"]))
    {
        for t in job["tables"].as_array().into_iter().flatten() {
            out.insert(
                t["table"].as_str().unwrap().to_string(),
                t["chunks"].as_u64().unwrap_or(0),
            );
        }
    }
    (out, b["snapshot_done"] == Value::Bool(true))
}

/// `(table, chunk)` of every read record in the stream, with its count.
async fn chunk_reads(f: &Fixture) -> BTreeMap<(String, u64), u64> {
    let records = kinesis::read_all(&kinesalite().client(), &f.stream).await;
    replay(&user_records(&records)).chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_killed_twice_resumes_from_its_last_accepted_chunk() {
    use crate::support::process::Streamer;
    const ROWS: i64 = 20_000;
    const CHUNK: u64 = 1_000;
    let m = crate::support::moto::shared();
    let f = Fixture::new("snap_kill", &["k1", "k2"], ROWS).await;
    let parameter = format!("/test/{}/checkpoint", f.slot);
    let (_, dir) = f.config(&format!(
        "      snapshot: initial\n      snapshot_chunk_rows: {CHUNK}\n      snapshot_max_rows_per_sec: 2500\n      checkpoint_parameter: {parameter}\n      checkpoint_interval_secs: 1\n"
    ));
    let path = dir.path().join("configs.yml");
    let env = [("AWS_ENDPOINT_URL_KINESIS", kinesalite().endpoint.as_str())];
    let ssm = aws_sdk_ssm::Client::new(&m.sdk_config());
    let load = Load::start(&f, ROWS).await;

    let mut resumed_at = Vec::new();
    for kill in 0..2 {
        let mut streamer = Streamer::start_with_env(&m.endpoint, &path, &env);
        // Kill once a few more chunks than before were checkpointed.
        let before: u64 = checkpointed_chunks(&ssm, &parameter).await.0.values().sum();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now: u64 = checkpointed_chunks(&ssm, &parameter).await.0.values().sum();
            if now >= before + 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress before kill {kill}: {}",
                streamer.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        streamer.signal(libc::SIGKILL);
        let _ = streamer.wait_exit(Duration::from_secs(10));
        let (at_kill, finished) = checkpointed_chunks(&ssm, &parameter).await;
        assert!(
            !finished,
            "the snapshot ended before kill {kill}: make it slower"
        );
        resumed_at.push((at_kill, chunk_reads(&f).await));
    }
    let mut streamer = Streamer::start_with_env(&m.endpoint, &path, &env);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !checkpointed_chunks(&ssm, &parameter).await.1 {
        assert!(
            Instant::now() < deadline,
            "the snapshot did not finish: {}",
            streamer.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let statements = load.finish().await;
    assert!(
        statements > 100,
        "the workload ran during the snapshot ({statements})"
    );
    let (r, diff) = settled(&f).await;
    streamer.signal(libc::SIGTERM);
    let _ = streamer.wait_exit(Duration::from_secs(30));
    drop_slot(&f.db, &f.slot);
    assert_consistent(&r, &diff, "snapshot killed twice");

    // After each kill, no chunk at or below the checkpointed one was read again; at
    // most the chunks in flight when it died were.
    let mut later = r.chunks.clone();
    for (i, (at_kill, before)) in resumed_at.iter().enumerate().rev() {
        for ((table, chunk), n) in &later {
            let was = before.get(&(table.clone(), *chunk)).copied().unwrap_or(0);
            if *n > was {
                let accepted = at_kill.get(table).copied().unwrap_or(0);
                assert!(
                    *chunk > accepted,
                    "kill {i}: {table} chunk {chunk} read again though the checkpoint held {accepted} chunks"
                );
            }
        }
        later = before.clone();
    }
    let again: u64 = r
        .chunks
        .values()
        .filter(|n| **n > 0)
        .map(|n| n.saturating_sub(CHUNK))
        .sum();
    let total: u64 = r.chunks.values().sum();
    eprintln!("snapshot killed twice: resumed at {:?}; {total} read records for {} rows, {again} sent twice", resumed_at.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(), 2 * ROWS);
    assert!(
        total < 2 * ROWS as u64 + 2 * 3 * CHUNK * 2,
        "{total} read records: the snapshot started over instead of resuming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_throttling_during_a_backfill_loses_nothing_and_keeps_key_order() {
    use crate::support::stub::{KinesisStub, RecordError};
    const ROWS: i64 = 5_000;
    let f = Fixture::new("snap_throttle", &["h1", "h2"], ROWS).await;
    let stub = KinesisStub::with_seed(0xbf11);
    stub.create_stream(&f.stream, 2);
    let (config, _dir) = f.config(
        "      snapshot: initial\n      snapshot_chunk_rows: 500\n      checkpoint: false\n",
    );
    // Partial failures, whole-request throttles and one shard throttled outright.
    stub.fail_records(0.3, RecordError::Throughput);
    stub.throttle_next(5);
    stub.throttle_shard(&f.stream, 0, Duration::from_secs(3));
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: stub.sdk_config(),
        },
    );
    let load = Load::start(&f, ROWS).await;
    wait_backfilled(&pipeline, Duration::from_secs(240)).await;
    let statements = load.finish().await;
    assert!(
        statements > 100,
        "the workload ran during the backfill ({statements})"
    );
    let (r, diff) = settled_from(&f, || async {
        let records: Vec<ReadRecord> = stub
            .records(&f.stream)
            .into_iter()
            .map(|s| ReadRecord {
                partition_key: s.partition_key,
                data: s.data,
                shard_id: s.shard_id,
                sequence_number: s.sequence_number,
            })
            .collect();
        user_records(&records)
    })
    .await;
    let throttled = pipeline.slots[0]
        .stats
        .throttled_records
        .load(Ordering::Relaxed);
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);
    eprintln!(
        "backfill under throttling: {} reads, {} changes, {throttled} records throttled",
        r.reads, r.changes
    );
    assert!(throttled > 0, "the stub throttled");
    assert_consistent(&r, &diff, "backfill under throttling");
}
