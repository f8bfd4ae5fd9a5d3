//! Operating it: `/healthz` and `/readyz` following slot states, WAL safety (a slot
//! the server invalidates), heartbeats advancing an idle slot, and `status`.
//! Real PostgreSQL (shared or private clusters with their own settings), the Kinesis
//! stub; the pipeline and its operations tasks run in process.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::pipeline::SlotState;
use serde_json::Value;

use crate::support::case::{get, Case, Running};
use crate::support::pg::{self, Pg, PgOptions};
use crate::support::process::{command, run};
use crate::support::stub::StallMode;

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
    let case = Case::new(&pg, "ready").with_sql("CREATE TABLE t (id int PRIMARY KEY)");
    let stub = case.stub(1);
    let yaml = case.ops_yaml("ready_retry_budget_secs: 2\n", "");
    let running = Running::start(&yaml, stub.sdk_config()).await;
    let addr = running.addr();

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
    stub.delete_stream(&case.stream);
    pg.execute(&case.db, "INSERT INTO t VALUES (1)");
    let (code, body) = readyz_until(addr, Duration::from_secs(60), |c, b| {
        c == 503 && slot_state(b) == "stopped"
    })
    .await;
    assert_eq!((code, slot_state(&body)), (503, "stopped"), "{body}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidated_slot_stops_with_what_to_do() {
    let pg = Pg::start(
        PgOptions::default()
            .set("max_slot_wal_keep_size", "'1MB'")
            .set("wal_keep_size", "0"),
    );
    let case = Case::new(&pg, "lost")
        .with_sql("CREATE TABLE t (id int PRIMARY KEY, pad text); CREATE TABLE filler (pad text)");
    let db = &case.db;
    let stub = case.stub(1);
    let yaml = case.ops_yaml("", "      queue_capacity: 4\n");
    let running = Running::start(&yaml, stub.sdk_config()).await;
    let status = running.slot();
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.state() != SlotState::Streaming && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status.state(), SlotState::Streaming);

    // Kinesis hangs: nothing is acknowledged, so the slot holds its WAL.
    stub.stall_for(Duration::from_secs(600), StallMode::Unavailable);
    pg.execute(
        db,
        "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 50) g",
    );
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut state = status.state();
    while !matches!(state, SlotState::Stopped { .. }) && Instant::now() < deadline {
        pg.execute(
            db,
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
            db,
            &format!(
                "SELECT wal_status FROM pg_replication_slots WHERE slot_name = '{}'",
                case.slot
            )
        )
        .trim(),
        "lost"
    );
    let (code, body) = get(running.addr(), "/readyz").await;
    assert_eq!(code, 503, "{body}");
    stub.clear_faults();
    let _ = running.pipeline.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_advance_a_slot_whose_database_is_idle() {
    let pg = pg::shared();
    let case = Case::new(pg, "hb").with_sql("CREATE TABLE t (id int PRIMARY KEY)");
    let (db, slot) = (&case.db, &case.slot);
    let other = pg.create_database(&pg::unique_name("hb_busy"));
    pg.execute(&other, "CREATE TABLE busy (id int)");
    let stub = case.stub(1);
    let yaml = case.ops_yaml("", "      heartbeat_interval_secs: 1\n");
    let running = Running::start(&yaml, stub.sdk_config()).await;
    let status = running.slot();

    // WAL grows only in the other database.
    pg.execute(&other, "INSERT INTO busy SELECT generate_series(1, 1000)");
    let target: String = pg
        .psql_in(&other, "SELECT pg_current_wal_lsn()")
        .trim()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let advanced = loop {
        let past = pg.psql_in(
            db,
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
        stub.record_count(&case.stream),
        0,
        "a heartbeat reached the stream"
    );
    running.stop().await;
    let _ = pg.try_psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
}

#[test]
fn status_prints_a_row_per_slot_as_a_table_and_as_json() {
    let pg = pg::shared();
    let case = Case::new(pg, "status");
    let (db, slot) = (&case.db, &case.slot);
    pg.psql_in(
        db,
        &format!("SELECT pg_create_logical_replication_slot('{slot}', 'wal2json')"),
    );
    pg.execute(
        db,
        "CREATE TABLE t (id int); INSERT INTO t SELECT generate_series(1, 100)",
    );
    let path = case.write_config(&case.ops_yaml("", ""));
    let path = path.to_str().unwrap();

    let table = run(
        command("http://127.0.0.1:9", &["status", "--config", path]),
        Duration::from_secs(60),
    );
    assert_eq!(table.code, Some(0), "{}", table.describe());
    let row = table
        .stdout
        .lines()
        .find(|l| l.starts_with(slot.as_str()))
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
    // The lag runs to the shared cluster's current WAL position, which other tests
    // move between the runs: it lies between the table's and the lag read after.
    let lag_after: i64 = pg
        .psql_in(
            db,
            &format!(
                "SELECT (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint \
                 FROM pg_replication_slots WHERE slot_name = '{slot}'"
            ),
        )
        .trim()
        .parse()
        .unwrap();
    let lag_json = rows[0]["lag_bytes"].as_i64().unwrap_or(-1);
    assert!(
        lag <= lag_json && lag_json <= lag_after,
        "{lag} <= {lag_json} <= {lag_after}: {rows}"
    );
    assert!(rows[0]["lag"].as_str().unwrap().ends_with("B"), "{rows}");

    pg.psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
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
