//! Operating it: `/healthz` and `/readyz` following slot states, WAL safety (a slot
//! the server invalidates), heartbeats advancing an idle slot, and `status`.
//! Real PostgreSQL (shared or private clusters with their own settings), the Kinesis
//! stub; the pipeline and its operations tasks run in process.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::serve::{EmfOut, Ops};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::kinesis::unique_stream_name;
use crate::support::pg::{self, password_for, unique_name, Pg, PgOptions, SUPERUSER};
use crate::support::process::{command, run};
use crate::support::stub::{KinesisStub, StallMode};

/// A config with one slot on `pg`, ops on a free local port, metrics every second.
pub fn ops_yaml(pg: &Pg, slot: &str, db: &str, stream: &str, top: &str, extra: &str) -> String {
    format!(
        "http_listen: 127.0.0.1:0\nmetrics_interval_secs: 1\n{top}replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      password: {}\n      db_name: {db}\n      options: {{add-tables: 'public.t'}}\n      kns_stream: {stream}\n      status_interval_secs: 1\n      checkpoint: false\n{extra}",
        pg.port,
        password_for(SUPERUSER).unwrap_or_default(),
    )
}

pub fn load(yaml: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (config, dir)
}

/// A `Write` the test can read back (EMF lines).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn out(&self) -> EmfOut {
        Arc::new(Mutex::new(self.clone()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `GET path` over a plain socket: (status code, body).
pub async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.unwrap();
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// Poll `/readyz` until `want(code, body)` or the timeout; the last answer.
async fn readyz_until(
    addr: std::net::SocketAddr,
    timeout: Duration,
    want: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let deadline = Instant::now() + timeout;
    loop {
        let (code, body) = get(addr, "/readyz").await;
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        if want(code, &json) || Instant::now() > deadline {
            return (code, json);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn slot_state(body: &Value) -> &str {
    body["slots"][0]["state"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_slot_state_through_an_outage_and_a_stop() {
    let pg = Pg::start(PgOptions::default());
    let db = pg.create_database("ready");
    pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY)");
    let stub = KinesisStub::start();
    let stream = unique_stream_name("ready");
    stub.create_stream(&stream, 1);
    let yaml = ops_yaml(
        &pg,
        "ready_slot",
        &db,
        &stream,
        "ready_retry_budget_secs: 2\n",
        "",
    );
    let (config, _dir) = load(&yaml);
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: stub.sdk_config(),
        },
    );
    let ops = Ops::start_with(&config, &pipeline.slots, Captured::default().out()).await;
    let addr = ops.http_addr().expect("bound");

    let (code, body) = readyz_until(addr, Duration::from_secs(30), |c, _| c == 200).await;
    assert_eq!((code, slot_state(&body)), (200, "streaming"), "{body}");
    assert_eq!(get(addr, "/healthz").await, (200, "ok\n".to_string()));

    // PostgreSQL goes away: retrying (still ready within the budget), then past it.
    pg.stop_immediate();
    let (code, body) = readyz_until(addr, Duration::from_secs(30), |c, b| {
        c == 503 && slot_state(b) == "retrying"
    })
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(
        body["slots"][0]["retrying_for_secs"].as_u64().unwrap() >= 2,
        "{body}"
    );
    // A short class only: the error text (server address, row data) stays in the logs.
    let class = body["slots"][0]["error_class"].as_str().unwrap_or("");
    assert!(
        ["postgres_connection", "postgres_error"].contains(&class),
        "{body}"
    );
    assert!(body["slots"][0].get("error").is_none(), "{body}");
    assert!(!body.to_string().contains("127.0.0.1"), "{body}");
    assert_eq!(get(addr, "/healthz").await.0, 200, "alive while unready");

    pg.start_again();
    let (code, body) = readyz_until(addr, Duration::from_secs(90), |c, _| c == 200).await;
    assert_eq!((code, slot_state(&body)), (200, "streaming"), "{body}");

    // The stream disappears: the slot stops for good.
    stub.delete_stream(&stream);
    pg.execute(&db, "INSERT INTO t VALUES (1)");
    let (code, body) = readyz_until(addr, Duration::from_secs(60), |c, b| {
        c == 503 && slot_state(b) == "stopped"
    })
    .await;
    assert_eq!((code, slot_state(&body)), (503, "stopped"), "{body}");
    pipeline.stop();
    let _ = pipeline.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_stops_with_what_to_do() {
    let pg = Pg::start(
        PgOptions::default()
            .set("max_slot_wal_keep_size", "'1MB'")
            .set("wal_keep_size", "0"),
    );
    let db = pg.create_database("lost");
    pg.execute(
        &db,
        "CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE TABLE filler (pad text)",
    );
    let stub = KinesisStub::start();
    let stream = unique_stream_name("lost");
    stub.create_stream(&stream, 1);
    let yaml = ops_yaml(
        &pg,
        "lost_slot",
        &db,
        &stream,
        "",
        "      queue_capacity: 4\n",
    );
    let (config, _dir) = load(&yaml);
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: stub.sdk_config(),
        },
    );
    let ops = Ops::start_with(&config, &pipeline.slots, Captured::default().out()).await;
    let status = pipeline.slots[0].clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.state() != SlotState::Streaming && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status.state(), SlotState::Streaming);

    // Kinesis hangs: nothing is acknowledged, so the slot holds its WAL.
    stub.stall_for(Duration::from_secs(600), StallMode::Unavailable);
    pg.execute(
        &db,
        "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 50) g",
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut state = status.state();
    while !matches!(state, SlotState::Stopped { .. }) && Instant::now() < deadline {
        pg.execute(
            &db,
            "INSERT INTO filler SELECT repeat('y', 1000) FROM generate_series(1, 3000); SELECT pg_switch_wal(); CHECKPOINT;",
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        state = status.state();
    }
    let SlotState::Stopped { error } = state else {
        panic!("the slot did not stop: {state:?}\n{}", pg.log_tail());
    };
    assert!(
        error.contains("lost") && error.contains("backfill"),
        "{error}"
    );
    assert_eq!(
        pg.psql_in(
            &db,
            "SELECT wal_status FROM pg_replication_slots WHERE slot_name = 'lost_slot'"
        )
        .trim(),
        "lost"
    );
    let (code, body) = get(ops.http_addr().unwrap(), "/readyz").await;
    assert_eq!(code, 503, "{body}");
    stub.clear_faults();
    let _ = pipeline.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_advance_a_slot_whose_database_is_idle() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("hb_idle"));
    let other = pg.create_database(&unique_name("hb_busy"));
    pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY)");
    pg.execute(&other, "CREATE TABLE busy (id int)");
    let slot = unique_name("hb");
    let stub = KinesisStub::start();
    let stream = unique_stream_name("hb");
    stub.create_stream(&stream, 1);
    let yaml = ops_yaml(
        pg,
        &slot,
        &db,
        &stream,
        "",
        "      heartbeat_interval_secs: 1\n",
    );
    let (config, _dir) = load(&yaml);
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: stub.sdk_config(),
        },
    );
    let _ops = Ops::start_with(&config, &pipeline.slots, Captured::default().out()).await;
    let status = pipeline.slots[0].clone();

    // WAL grows only in the other database.
    pg.execute(&other, "INSERT INTO busy SELECT generate_series(1, 1000)");
    let target: String = pg
        .psql_in(&other, "SELECT pg_current_wal_lsn()")
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let advanced = loop {
        let past = pg.psql_in(
            &db,
            &format!("SELECT confirmed_flush_lsn >= '{target}' FROM pg_replication_slots WHERE slot_name = '{slot}'"),
        );
        if past.trim() == "t" {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(advanced, "confirmed_flush_lsn did not pass {target}");
    // The slot may advance before the first heartbeat tick: wait for one.
    while status.metrics.heartbeats() == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(status.metrics.heartbeats() >= 1, "no heartbeat was written");
    assert_eq!(status.state(), SlotState::Streaming);
    assert_eq!(
        stub.record_count(&stream),
        0,
        "a heartbeat reached the stream"
    );
    pipeline.stop();
    let _ = pipeline.wait().await;
    let _ = pg.try_psql_in(&db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
}

#[test]
fn status_prints_a_row_per_slot_as_a_table_and_as_json() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("status"));
    let slot = unique_name("status");
    pg.psql_in(
        &db,
        &format!("SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"),
    );
    pg.execute(
        &db,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)",
    );
    let yaml = ops_yaml(pg, &slot, &db, "s", "", "");
    let (_config, dir) = load(&yaml);
    let path = dir.path().join("configs.yml");
    let path = path.to_str().unwrap();

    let table = run(
        command("http://127.0.0.1:9", &["status", "--config", path]),
        Duration::from_secs(60),
    );
    assert_eq!(table.code, Some(0), "{}", table.describe());
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(&slot))
        .unwrap_or_else(|| panic!("{}", table.describe()));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&cells[1..4], ["no", "-", "reserved"], "{row}");
    let lag: i64 = cells[4].parse().unwrap();
    assert!(lag > 0, "{row}");
    assert!(table.stdout.starts_with("SLOT"), "{}", table.stdout);

    let json = run(
        command(
            "http://127.0.0.1:9",
            &["status", "--json", "--config", path],
        ),
        Duration::from_secs(60),
    );
    assert_eq!(json.code, Some(0), "{}", json.describe());
    let rows: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(rows[0]["slot"], slot.as_str());
    assert_eq!(rows[0]["active"], false);
    assert_eq!(rows[0]["wal_status"], "reserved");
    assert_eq!(rows[0]["lag_bytes"], lag);
    assert!(rows[0]["lag"].as_str().unwrap().ends_with("B"), "{rows}");

    pg.psql_in(&db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
    let missing = run(
        command("http://127.0.0.1:9", &["status", "--config", path]),
        Duration::from_secs(60),
    );
    assert_eq!(missing.code, Some(1), "{}", missing.describe());
    assert!(
        missing.stdout.contains("does not exist"),
        "{}",
        missing.describe()
    );
}
