//! `tables:` on real PostgreSQL: one slot routed to two streams, skipped tables,
//! excluded and masked columns in every kind of record, and the acknowledgement
//! waiting for every stream.

use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use sha2::{Digest, Sha256};

use crate::support::case::{config_yaml, drop_slot, streaming_in_process};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name};
use crate::support::stub::KinesisStub;

fn sha(salt: &str, value: &str) -> String {
    hex::encode(Sha256::digest(format!("{salt}{value}").as_bytes()))
}

fn confirmed_flush(db: &str, slot: &str) -> Lsn {
    let text = pg::shared().psql_in(
        db,
        &format!("SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"),
    );
    Lsn::from_str(&text).unwrap_or_else(|e| panic!("{slot}: {text:?}: {e}"))
}

fn current_lsn(db: &str) -> Lsn {
    Lsn::from_str(&pg::shared().psql_in(db, "SELECT pg_current_wal_insert_lsn()")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tables_go_to_two_streams_with_skips_and_masks_in_every_kind_of_record() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("route"));
    pg.execute(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, email text, card text, total int);
         ALTER TABLE orders REPLICA IDENTITY FULL;
         CREATE TABLE items (id int PRIMARY KEY, sku text);
         CREATE TABLE audit_log (id int PRIMARY KEY);
         CREATE TABLE secrets (id int PRIMARY KEY);
         INSERT INTO orders VALUES (1, 'ann@example.com', '4111-1111', 10);",
    );
    let slot = unique_name("route");
    let (main, side) = (
        unique_stream_name("route-main"),
        unique_stream_name("route-side"),
    );
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &main, 1).await;
    kinesis::create_stream(&k.client(), &side, 2).await;
    let tables = format!(
        "      snapshot: initial\n      mask_salt: pepper\n      tables:\n        \
         - match: public.orders\n          stream: {side}\n          exclude_columns: [card]\n          \
         mask_columns: {{email: sha256}}\n        - match: public.audit_*\n          skip: true\n        \
         - match: public.secrets\n          skip: true\n"
    );
    let yaml = config_yaml(&[(&slot, &db, "{format-version: 2}", &main)], &tables);
    let (pipeline, _dir) = streaming_in_process(&yaml, k.sdk_config()).await;
    // The initial snapshot's row first, so that the changes below do not race it.
    kinesis::read_until(&k.client(), &side, 1, Duration::from_secs(60)).await;

    pg.execute(
        &db,
        "INSERT INTO orders VALUES (2, 'bob@example.com', '5500-0000', 20);
         UPDATE orders SET email = 'rob@example.com' WHERE id = 2;
         UPDATE orders SET id = 3 WHERE id = 2;
         DELETE FROM orders WHERE id = 3;
         INSERT INTO audit_log VALUES (1); INSERT INTO secrets VALUES (1);
         INSERT INTO items VALUES (1, 'sku-1');
         TRUNCATE orders;",
    );
    let end = current_lsn(&db);
    // read (backfill), insert, update, key change (delete + insert), delete, truncate.
    let on_side = kinesis::read_until(&k.client(), &side, 7, Duration::from_secs(60)).await;
    let on_main = kinesis::read_until(&k.client(), &main, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let on_main =
        kinesis::read_until(&k.client(), &main, on_main.len(), Duration::from_secs(5)).await;
    // Confirmed past the last commit only once both streams hold their records.
    let deadline = Instant::now() + Duration::from_secs(30);
    while confirmed_flush(&db, &slot) < end && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = confirmed_flush(&db, &slot);
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&db, &slot);
    assert!(confirmed >= end, "confirmed {confirmed} < {end}");

    // items' insert, and its backfilled row when the snapshot read it after the insert.
    let main_json: Vec<serde_json::Value> = on_main.iter().map(|r| r.json().unwrap()).collect();
    assert!(
        main_json.iter().all(|v| v["table"] == "items"),
        "{main_json:?}"
    );
    let mut kinds: Vec<String> = Vec::new();
    for r in &on_side {
        let v = r.json().unwrap();
        let text = String::from_utf8_lossy(&r.data);
        assert_eq!(v["table"], "orders", "{v}");
        assert!(
            !text.contains("example.com") && !text.contains("4111") && !text.contains("5500"),
            "a real value reached the stream: {text}"
        );
        assert!(
            !r.partition_key.contains("example.com"),
            "{}",
            r.partition_key
        );
        for side in ["data", "old"] {
            let Some(cols) = v[side].as_object() else {
                continue;
            };
            assert!(!cols.contains_key("card"), "{side} of {v}");
            if let Some(email) = cols.get("email") {
                let known =
                    ["ann", "bob", "rob"].map(|n| sha("pepper", &format!("{n}@example.com")));
                assert!(known.iter().any(|h| email == h), "{side} of {v}");
            }
        }
        let kind = v["kind"].as_str().unwrap().to_string();
        if kind == "update" || (kind == "delete" && v["key_change"].is_null()) {
            assert!(
                v["old"]["email"].is_string(),
                "REPLICA IDENTITY FULL: old is shaped, not gone: {v}"
            );
        }
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["delete", "delete", "insert", "insert", "read", "truncate", "update"],
        "{on_side:?}"
    );
    let read = on_side
        .iter()
        .map(|r| r.json().unwrap())
        .find(|v| v["kind"] == "read")
        .unwrap();
    assert_eq!(read["data"]["email"], sha("pepper", "ann@example.com"));
    assert_eq!(read["data"]["total"], 10);
    // The skips: one client-side (a glob), one server-side (wal2json's filter-tables).
    for r in on_side.iter().chain(&on_main) {
        let v = r.json().unwrap();
        assert!(v["table"] != "audit_log" && v["table"] != "secrets", "{v}");
    }
}

/// The second stream throttles every record for a while: the slot must not be
/// confirmed past a transaction of the first stream while an earlier transaction
/// waits on the second, although the first stream accepted everything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_routed_slot_is_confirmed_only_after_every_stream_accepted() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("route_ack"));
    pg.execute(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY); CREATE TABLE items (id int PRIMARY KEY);",
    );
    let slot = unique_name("route_ack");
    let (main, side) = (
        unique_stream_name("ack-main"),
        unique_stream_name("ack-side"),
    );
    let stub = KinesisStub::start();
    stub.create_stream(&main, 1);
    stub.create_stream(&side, 1);
    let tables =
        format!("      tables:\n        - match: public.orders\n          stream: {side}\n");
    let yaml = config_yaml(&[(&slot, &db, "{format-version: 2}", &main)], &tables);
    let (pipeline, _dir) = streaming_in_process(&yaml, stub.sdk_config()).await;

    const THROTTLED: Duration = Duration::from_secs(8);
    stub.throttle_shard(&side, 0, THROTTLED);
    let throttled_at = Instant::now();
    pg.execute(&db, "INSERT INTO orders VALUES (1);");
    let first_end = current_lsn(&db);
    pg.execute(&db, "INSERT INTO items VALUES (1);");
    let second_end = current_lsn(&db);
    // The first stream takes its record at once...
    let deadline = Instant::now() + Duration::from_secs(20);
    while stub.record_count(&main) < 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stub.record_count(&main), 1, "items never reached {main}");
    // ...and a few status intervals later the slot still waits for the other.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        throttled_at.elapsed() < THROTTLED,
        "the test was too slow to check"
    );
    assert_eq!(stub.record_count(&side), 0, "the throttle did not hold");
    let held = confirmed_flush(&db, &slot);
    assert!(
        held < first_end,
        "confirmed {held} past the orders transaction ({first_end}) that {side} has not accepted"
    );
    // Once the throttle ends, both are accepted and the slot moves past both.
    let deadline = Instant::now() + Duration::from_secs(60);
    while (stub.record_count(&side) < 1 || confirmed_flush(&db, &slot) < second_end)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = confirmed_flush(&db, &slot);
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&db, &slot);
    assert_eq!(stub.record_count(&side), 1);
    assert!(
        confirmed >= second_end,
        "confirmed {confirmed} < {second_end}"
    );
}
