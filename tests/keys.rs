//! Per-row order through primary-key changes and replica identities, with real
//! PostgreSQL 15 + wal2json and kinesalite: a key change is a delete under the old key
//! and an insert under the new one, and a change that cannot carry its row's key
//! stops the slot (at start, or when it arrives) instead of going out under the table.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use pg_cdc_to_kinesis::pipeline::SlotState;
use serde_json::Value;

use crate::support::case::{drop_slot, wait_state, Live};
use crate::support::kinesis::ReadRecord;
use crate::support::pg::{self};

const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A slot streaming `table` in wal2json `format` (see [`Live::new`]), not yet started;
/// `extra`: more slot keys, one per line, indented by six spaces.
async fn setup(prefix: &str, ddl: &str, table: &str, format: u8, extra: &str) -> Live {
    let options = format!("{{format-version: {format}, add-tables: 'public.{table}'}}");
    Live::new(prefix, ddl, &options, extra).await
}

/// `(partition key, payload)` in commit order.
fn in_commit_order(records: &[ReadRecord]) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = records
        .iter()
        .map(|r| (r.partition_key.clone(), r.json().unwrap()))
        .collect();
    out.sort_by_key(|(_, v)| {
        (
            v["commit_lsn"]
                .as_str()
                .map(|s| s.parse::<pg_cdc_to_kinesis::lsn::Lsn>().unwrap()),
            v["seq"].as_u64(),
        )
    });
    out
}

async fn primary_key_change(format: u8) {
    let s = setup(
        &format!("keychange_v{format}"),
        "CREATE TABLE orders (id int PRIMARY KEY, v text)",
        "orders",
        format,
        "",
    )
    .await;
    let pipeline = s.streaming().await;
    let pg = pg::shared();
    pg.execute(&s.db, "INSERT INTO orders VALUES (3, 'three')");
    pg.execute(&s.db, "UPDATE orders SET id = 30 WHERE id = 3");
    let records = s.records(3).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&s.db, &s.slot);

    let got = in_commit_order(&records);
    let summary: Vec<(&str, &str, Option<bool>)> = got
        .iter()
        .map(|(key, v)| {
            (
                key.as_str(),
                v["kind"].as_str().unwrap(),
                v["key_change"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("public.orders|3", "insert", None),
            ("public.orders|3", "delete", Some(true)),
            ("public.orders|30", "insert", Some(true)),
        ],
        "{got:#?}"
    );
    let (delete, insert) = (&got[1].1, &got[2].1);
    assert_eq!(delete["data"], serde_json::json!({"id": 3}), "{delete}");
    assert_eq!(
        insert["data"],
        serde_json::json!({"id": 30, "v": "three"}),
        "{insert}"
    );
    assert_eq!(delete["commit_lsn"], insert["commit_lsn"]);
    assert!(delete["commit_lsn"].is_string(), "{delete}");
    assert_eq!(
        delete["seq"].as_u64().map(|s| s + 1),
        insert["seq"].as_u64(),
        "the pair has consecutive seq"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_change_is_delete_old_key_then_insert_new_key_format_v2() {
    primary_key_change(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_key_change_is_delete_old_key_then_insert_new_key_format_v1() {
    primary_key_change(1).await;
}

/// A consumer that applies each partition key's records in order, keyed by `id`:
/// insert and update upsert `data` (an update whose `old` has another id first deletes
/// that row), delete removes `data`'s id.
fn apply(rows: &mut BTreeMap<i64, String>, v: &Value) {
    let id = |row: &Value| row["id"].as_i64().unwrap();
    match v["kind"].as_str().unwrap() {
        "delete" => {
            rows.remove(&id(&v["data"]));
        }
        kind => {
            if kind == "update" && v["old"]["id"].is_i64() && id(&v["old"]) != id(&v["data"]) {
                rows.remove(&id(&v["old"]));
            }
            rows.insert(id(&v["data"]), v["data"]["v"].as_str().unwrap().to_string());
        }
    }
}

/// `UPDATE id 2 → 3` then `INSERT id 2`: whichever key's records a consumer reads
/// first, it ends with both rows, as PostgreSQL did. A single update under `|3` would
/// delete the new row 2 when read after the `|2` records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_key_after_key_change_applies_in_any_order_of_keys() {
    let s = setup(
        "keyreuse",
        "CREATE TABLE orders (id int PRIMARY KEY, v text)",
        "orders",
        2,
        "",
    )
    .await;
    let pipeline = s.streaming().await;
    let pg = pg::shared();
    pg.execute(&s.db, "INSERT INTO orders VALUES (2, 'first')");
    pg.execute(&s.db, "UPDATE orders SET id = 3 WHERE id = 2");
    pg.execute(&s.db, "INSERT INTO orders VALUES (2, 'second')");
    let expected: BTreeMap<i64, String> = pg
        .psql_in(&s.db, "SELECT id, v FROM orders ORDER BY id")
        .lines()
        .map(|l| {
            let (id, v) = l.split_once('|').unwrap();
            (id.parse().unwrap(), v.to_string())
        })
        .collect();
    let records = s.records(4).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&s.db, &s.slot);

    // Each key's records in stream order (one key lives on one shard, in order).
    let mut by_key: Vec<(String, Vec<Value>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for r in &records {
        let i = *index.entry(r.partition_key.clone()).or_insert_with(|| {
            by_key.push((r.partition_key.clone(), Vec::new()));
            by_key.len() - 1
        });
        by_key[i].1.push(r.json().unwrap());
    }
    for reverse in [false, true] {
        let mut order: Vec<&(String, Vec<Value>)> = by_key.iter().collect();
        order.sort_by(|a, b| {
            if reverse {
                b.0.cmp(&a.0)
            } else {
                a.0.cmp(&b.0)
            }
        });
        let mut rows = BTreeMap::new();
        for (_, values) in &order {
            values.iter().for_each(|v| apply(&mut rows, v));
        }
        let keys: Vec<&str> = order.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            rows, expected,
            "keys applied in the order {keys:?}: {by_key:#?}"
        );
    }
}

const USING_INDEX_TABLE: &str = "CREATE TABLE ui (id int PRIMARY KEY, u int NOT NULL, v text); \
     CREATE UNIQUE INDEX ui_u ON ui (u); ALTER TABLE ui REPLICA IDENTITY USING INDEX ui_u;";

/// Under format 2 wal2json names `id` as the key of an insert but sends only `u` in a
/// delete's identity: the slot refuses to start, says why, and creates no slot.
/// Under format 1 wal2json names no key for such a table: insert and delete share the
/// table key, and the slot streams.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_using_a_non_key_index_is_refused_at_start_under_format_v2() {
    let s = setup("identity_idx", USING_INDEX_TABLE, "ui", 2, "").await;
    let pipeline = s.start();
    let state = wait_state(&pipeline.slots[0], READ_TIMEOUT, |s| {
        matches!(s, SlotState::Stopped { .. } | SlotState::Streaming)
    })
    .await;
    pipeline.stop();
    pipeline.wait().await.ok();
    let pg = pg::shared();
    let slots = pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}'",
        s.slot
    ));
    drop_slot(&s.db, &s.slot);
    let SlotState::Stopped { error } = state else {
        panic!("the slot did not refuse to start: {state:?}")
    };
    for needle in [
        "public.ui",
        "REPLICA IDENTITY USING INDEX ui_u carries u, not id",
        "partition_key primary_key",
        "REPLICA IDENTITY FULL",
    ] {
        assert!(error.contains(needle), "{needle:?} not in: {error}");
    }
    assert_eq!(slots, "0", "a refused slot must not be created");

    let v1 = setup("identity_idx_v1", USING_INDEX_TABLE, "ui", 1, "").await;
    let pipeline = v1.streaming().await;
    pg.execute(&v1.db, "INSERT INTO ui VALUES (1, 10, 'a')");
    pg.execute(&v1.db, "DELETE FROM ui WHERE id = 1");
    let records = v1.records(2).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&v1.db, &v1.slot);
    let keys: Vec<&str> = records.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(keys, ["public.ui", "public.ui"], "{records:?}");
}

/// A table whose identity loses the key while the slot runs: its delete stops the slot
/// with a message naming the table, the LSN and the fix; it never goes out under the
/// table key, and the slot's position stays before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_without_its_key_after_start_stops_the_slot_instead_of_table_key() {
    let s = setup(
        "identity_late",
        "CREATE TABLE ui (id int PRIMARY KEY, u int NOT NULL, v text); CREATE UNIQUE INDEX ui_u ON ui (u);",
        "ui",
        2,
        "",
    )
    .await;
    let pipeline = s.streaming().await;
    let status = pipeline.slots[0].clone();
    let pg = pg::shared();
    pg.execute(&s.db, "INSERT INTO ui VALUES (1, 10, 'a')");
    // The insert is delivered before the identity changes: a slot that stops drops
    // what it had not sent yet (it is read again on restart).
    assert_eq!(s.records(1).await.len(), 1, "the insert arrives");
    pg.execute(&s.db, "ALTER TABLE ui REPLICA IDENTITY USING INDEX ui_u");
    pg.execute(&s.db, "DELETE FROM ui WHERE id = 1");
    let state = wait_state(&status, READ_TIMEOUT, |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    let records = s.records(1).await;
    pipeline.stop();
    pipeline.wait().await.ok();
    drop_slot(&s.db, &s.slot);
    let SlotState::Stopped { error } = state else {
        panic!("the slot did not stop: {state:?}; records: {records:?}")
    };
    for needle in [
        "delete of public.ui",
        "[\"id\"]",
        "[\"u\"]",
        "partition_key: table",
    ] {
        assert!(error.contains(needle), "{needle:?} not in: {error}");
    }
    let keys: Vec<&str> = records.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(keys, ["public.ui|1"], "only the insert goes out");
}

/// `{columns: [region]}` on a table whose identity is its primary key: a delete could not
/// carry `region`, so the slot refuses to start and names the column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_columns_outside_the_identity_are_refused_at_start() {
    let s = setup(
        "identity_cols",
        "CREATE TABLE orders (id int PRIMARY KEY, region text NOT NULL)",
        "orders",
        2,
        "      partition_key: {columns: [region]}\n",
    )
    .await;
    let pipeline = s.start();
    let state = wait_state(&pipeline.slots[0], READ_TIMEOUT, |s| {
        matches!(s, SlotState::Stopped { .. } | SlotState::Streaming)
    })
    .await;
    pipeline.stop();
    pipeline.wait().await.ok();
    drop_slot(&s.db, &s.slot);
    let SlotState::Stopped { error } = state else {
        panic!("the slot did not refuse to start: {state:?}")
    };
    for needle in [
        "{columns: [region]}",
        "public.orders (REPLICA IDENTITY DEFAULT carries id, not region)",
    ] {
        assert!(error.contains(needle), "{needle:?} not in: {error}");
    }
}
