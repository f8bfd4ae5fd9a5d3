//! End-to-end: real PostgreSQL 15 + wal2json → the pipeline (in process) → kinesalite
//! or the scripted stub. Each test owns its database, slot and stream names.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::source;

use crate::support::case::{config_yaml, drop_slot, load, streaming_in_process, wait_state};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name, SUPERUSER};
use crate::support::stub::{KinesisStub, RecordError};

async fn confirmed_flush(db: &str, slot: &str) -> Lsn {
    let pg = pg::shared();
    let client = source::sql_connect(&pg.connect_params(SUPERUSER, db))
        .await
        .unwrap();
    source::slot_info(&client, slot)
        .await
        .unwrap()
        .and_then(|i| i.confirmed_flush_lsn)
        .unwrap_or_default()
}

const TYPES_TABLE: &str = "CREATE TABLE t (id int PRIMARY KEY, big bigint, num numeric(40,10), txt text, j jsonb, b bytea, flag bool, ts timestamptz, arr int[], maybe text)";
const EXACT_NUMERIC: &str = "12345678901234567890.1234567890";

async fn every_kind_and_type(format: u8) {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name(&format!("types_v{format}")));
    pg.execute(&db, TYPES_TABLE);
    let slot = unique_name(&format!("types_v{format}"));
    let stream = unique_stream_name("types");
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &stream, 2).await;
    let yaml = config_yaml(
        &[(
            &slot,
            &db,
            &format!("{{format-version: {format}, add-tables: 'public.t'}}"),
            &stream,
        )],
        // Both wire formats reach kinesalite byte for byte: format-version 1 is sent
        // in JSON (base64 data), 2 in CBOR (the default).
        if format == 1 {
            "      wire_format: json\n"
        } else {
            ""
        },
    );
    let (pipeline, _dir) = streaming_in_process(&yaml, k.sdk_config()).await;

    pg.execute(
        &db,
        &format!(
            "INSERT INTO t VALUES (1, 9223372036854775807, {EXACT_NUMERIC}, E'unicode é ☃ \"quotes\" ''single''\\nnew line', '{{\"a\": [1, 2]}}', '\\xdeadbeef', true, '2026-01-02 03:04:05+00', '{{1,2,3}}', NULL);
             UPDATE t SET txt = 'changed' WHERE id = 1;
             DELETE FROM t WHERE id = 1;
             BEGIN; INSERT INTO t (id, txt) VALUES (2, 'two'), (3, 'three'); COMMIT;
             TRUNCATE t;"
        ),
    );
    // wal2json 2.5 emits TRUNCATE only in format-version 2 (format 1 compiles it out).
    let expected: &[&str] = if format == 2 {
        &["insert", "update", "delete", "insert", "insert", "truncate"]
    } else {
        &["insert", "update", "delete", "insert", "insert"]
    };
    let records = kinesis::read_until(
        &k.client(),
        &stream,
        expected.len(),
        Duration::from_secs(30),
    )
    .await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&db, &slot);

    let mut json: Vec<serde_json::Value> = records.iter().map(|r| r.json().unwrap()).collect();
    // Records of different keys may sit on different shards: restore commit order.
    json.sort_by_key(|v| {
        (
            v["commit_lsn"].as_str().map(|s| s.parse::<Lsn>().unwrap()),
            v["seq"].as_u64(),
        )
    });
    let kinds: Vec<&str> = json.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, expected, "{json:#?}");

    let insert = &json[0];
    assert_eq!(insert["database"], db.as_str());
    assert_eq!(insert["schema"], "public");
    assert_eq!(insert["table"], "t");
    assert!(insert["timestamp"].is_string(), "{insert}");
    assert!(insert["xid"].is_u64(), "{insert}");
    assert!(insert["commit_lsn"].is_string(), "{insert}");
    let data = &insert["data"];
    assert_eq!(data["id"], 1);
    assert_eq!(data["big"], 9223372036854775807i64);
    assert_eq!(data["txt"], "unicode é ☃ \"quotes\" 'single'\nnew line");
    assert_eq!(data["flag"], true);
    assert!(data["j"].to_string().contains('a'), "{data}");
    assert!(data["b"].as_str().unwrap().contains("deadbeef"), "{data}");
    assert!(
        data["ts"].as_str().unwrap().starts_with("2026-01-02"),
        "{data}"
    );
    assert!(data["arr"].to_string().contains("1,2,3"), "{data}");
    assert!(data["maybe"].is_null(), "{data}");
    // The numeric's text is byte-identical: it never went through f64.
    let raw = records
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .find(|t| t.contains("\"kind\":\"insert\"") && t.contains("\"id\":1"))
        .unwrap();
    assert!(raw.contains(EXACT_NUMERIC), "{raw}");

    assert_eq!(json[1]["data"]["txt"], "changed");
    assert_eq!(
        json[2]["data"]["id"], 1,
        "a delete carries its key: {}",
        json[2]
    );
    assert_eq!(json[3]["seq"], 0);
    assert_eq!(json[4]["seq"], 1);
    assert_eq!(json[3]["commit_lsn"], json[4]["commit_lsn"]);
    // All changes of row 1 share a partition key, so they stay in order on one shard.
    let keys: HashSet<&str> = records
        .iter()
        .filter(|r| r.json().unwrap()["data"]["id"] == 1)
        .map(|r| r.partition_key.as_str())
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_type_format_v2() {
    every_kind_and_type(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_and_type_format_v1() {
    every_kind_and_type(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_slots_two_streams_one_broken() {
    let pg = pg::shared();
    let db_a = pg.create_database(&unique_name("multi_a"));
    let db_b = pg.create_database(&unique_name("multi_b"));
    for db in [&db_a, &db_b] {
        pg.execute(db, "CREATE TABLE items (id int PRIMARY KEY, v text)");
    }
    let (s1, s2, s3) = (
        unique_name("multi_one"),
        unique_name("multi_two"),
        unique_name("multi_broken"),
    );
    let (x, y) = (unique_stream_name("multi-x"), unique_stream_name("multi-y"));
    let missing = unique_stream_name("multi-missing");
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &x, 1).await;
    kinesis::create_stream(&k.client(), &y, 1).await;
    let opts = "{add-tables: 'public.items'}";
    let yaml = config_yaml(
        &[
            (&s1, &db_a, opts, &x),
            (&s2, &db_b, opts, &y),
            (&s3, &db_a, opts, &missing),
        ],
        "",
    );
    let (config, _dir) = load(&yaml);
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: k.sdk_config(),
        },
    );
    let broken = pipeline
        .slots
        .iter()
        .find(|s| s.slot == s3)
        .unwrap()
        .clone();
    let state = wait_state(&broken, Duration::from_secs(30), |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    let SlotState::Stopped { error } = state else {
        panic!("the broken slot did not stop: {state:?}")
    };
    assert!(
        error.contains(&missing) && error.contains("does not exist"),
        "{error}"
    );
    for status in pipeline.slots.iter().filter(|s| s.slot != s3) {
        let state = wait_state(status, Duration::from_secs(30), |s| {
            *s == SlotState::Streaming
        })
        .await;
        assert_eq!(state, SlotState::Streaming, "{}", status.slot);
    }
    pg.execute(
        &db_a,
        "INSERT INTO items SELECT g, 'a' || g FROM generate_series(1, 50) g",
    );
    pg.execute(
        &db_b,
        "INSERT INTO items SELECT g, 'b' || g FROM generate_series(1, 30) g",
    );
    let on_x = kinesis::read_until(&k.client(), &x, 50, Duration::from_secs(30)).await;
    let on_y = kinesis::read_until(&k.client(), &y, 30, Duration::from_secs(30)).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    for (db, slot) in [(&db_a, &s1), (&db_b, &s2), (&db_a, &s3)] {
        drop_slot(db, slot);
    }
    assert_eq!(on_x.len(), 50);
    assert_eq!(on_y.len(), 30);
    assert!(on_x.iter().all(|r| r.json().unwrap()["data"]["v"]
        .as_str()
        .unwrap()
        .starts_with('a')));
    assert!(on_y
        .iter()
        .all(|r| r.json().unwrap()["database"] == db_b.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_transaction_goes_out_in_requests_of_at_most_500() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("batch"));
    pg.execute(&db, "CREATE TABLE rows (id int PRIMARY KEY, v text)");
    let slot = unique_name("batch");
    let stub = KinesisStub::start();
    stub.create_stream("batch-stream", 4);
    let yaml = config_yaml(
        &[(&slot, &db, "{add-tables: 'public.rows'}", "batch-stream")],
        "",
    );
    let (pipeline, _dir) = streaming_in_process(&yaml, stub.sdk_config()).await;
    pg.execute(
        &db,
        "INSERT INTO rows SELECT g, 'row ' || g FROM generate_series(1, 1200) g",
    );
    let records = stub
        .wait_for_records("batch-stream", 1200, Duration::from_secs(60))
        .await;
    let stats = pipeline.slots[0].stats.clone();
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&db, &slot);
    assert_eq!(records.len(), 1200);
    let per_request = stub.stats().records_per_request;
    assert!(per_request.iter().all(|&n| n <= 500), "{per_request:?}");
    assert!(
        per_request.len() >= 3,
        "1,200 records need at least 3 requests: {per_request:?}"
    );
    assert!(
        stats
            .max_request_records
            .load(std::sync::atomic::Ordering::Relaxed)
            <= 500
    );
}

/// 30% of records fail at random, with throttling bursts: every row arrives, per-key
/// order holds, and the slot never confirms past a record Kinesis has not accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failures_and_throttling_lose_nothing_and_keep_order() {
    const TXNS: u64 = 300;
    const KEYS: u64 = 40;
    const PER_TXN: u64 = 5;
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("faults"));
    pg.execute(&db, &format!("CREATE TABLE acct (id int PRIMARY KEY, version int); INSERT INTO acct SELECT g, -1 FROM generate_series(0, {}) g; CREATE TABLE lsn_log (txn int PRIMARY KEY, lsn pg_lsn);", KEYS - 1));
    // Each transaction i sets version = i on PER_TXN keys, then logs a WAL position
    // past its commit record (the insert position: with synchronous_commit=off the
    // write position can still be behind the commit). Ground truth per key: versions in increasing order.
    pg.execute(&db, &format!(
        "CREATE PROCEDURE work() LANGUAGE plpgsql AS $$
         BEGIN
           FOR i IN 0..{last} LOOP
             UPDATE acct SET version = i WHERE id IN (SELECT (i * {PER_TXN} + j) % {KEYS} FROM generate_series(0, {pm}) j);
             COMMIT;
             INSERT INTO lsn_log VALUES (i, pg_current_wal_insert_lsn());
             COMMIT;
             PERFORM pg_sleep(0.002);
           END LOOP;
         END $$;",
        last = TXNS - 1,
        pm = PER_TXN - 1
    ));
    let slot = unique_name("faults");
    let stub = KinesisStub::with_seed(7);
    stub.create_stream("faults", 4);
    let yaml = config_yaml(
        &[(&slot, &db, "{add-tables: 'public.acct'}", "faults")],
        "      max_in_flight: 4\n",
    );
    let (pipeline, _dir) = streaming_in_process(&yaml, stub.sdk_config()).await;
    stub.fail_records(0.3, RecordError::Mixed);

    let db_work = db.clone();
    let worker = std::thread::spawn(move || pg::shared().execute(&db_work, "CALL work()"));
    // While it runs: sample what the slot confirmed, then what Kinesis holds.
    let mut samples: Vec<(Lsn, HashSet<(u64, i64)>)> = Vec::new();
    let mut bursts = 0;
    while !worker.is_finished() {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if bursts < 10 {
            stub.throttle_next(3);
            bursts += 1;
        }
        let confirmed = confirmed_flush(&db, &slot).await;
        samples.push((confirmed, accepted_versions(&stub)));
    }
    worker.join().unwrap();
    let expected_rows = (TXNS * PER_TXN) as usize;
    let deadline = Instant::now() + Duration::from_secs(90);
    while accepted_versions(&stub).len() < expected_rows && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stub.clear_faults();
    pipeline.stop();
    pipeline.wait().await.unwrap();

    // Ground truth in commit order, and what arrived, in arrival order.
    let mut expected = Vec::new();
    for i in 0..TXNS {
        for j in 0..PER_TXN {
            expected.push(((i * PER_TXN + j) % KEYS, i));
        }
    }
    let records = stub.records("faults");
    let verdict = kinesis::verify(&expected, &records, |r| {
        let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
        Some((v["data"]["id"].as_u64()?, v["data"]["version"].as_u64()?))
    });
    let stats = stub.stats();
    eprintln!(
        "faults: {verdict}; stub failed {} records, throttled {} requests",
        stats.failed_records, stats.throttled_requests
    );
    verdict.assert_at_least_once_in_order();
    assert!(
        stats.failed_records > 0 && stats.throttled_requests > 0,
        "the faults did not happen"
    );

    // No confirmed position passed an unaccepted record.
    let log: Vec<(u64, Lsn)> = pg
        .psql_in(&db, "SELECT txn, lsn FROM lsn_log ORDER BY txn")
        .lines()
        .filter_map(|l| l.split_once('|'))
        .map(|(t, l)| (t.parse().unwrap(), l.parse().unwrap()))
        .collect();
    let mut checked = 0;
    for (confirmed, accepted) in &samples {
        for (txn, after_commit) in &log {
            if after_commit <= confirmed {
                for j in 0..PER_TXN {
                    let key = (txn * PER_TXN + j) % KEYS;
                    assert!(
                        accepted.contains(&(key, *txn as i64)),
                        "slot confirmed {confirmed} but txn {txn} (key {key}) was not yet accepted"
                    );
                    checked += 1;
                }
            }
        }
    }
    eprintln!(
        "faults: {} samples, {checked} confirmed rows checked against acceptance",
        samples.len()
    );
    drop_slot(&db, &slot);
}

fn accepted_versions(stub: &KinesisStub) -> HashSet<(u64, i64)> {
    stub.records("faults")
        .iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
            Some((v["data"]["id"].as_u64()?, v["data"]["version"].as_i64()?))
        })
        .collect()
}
