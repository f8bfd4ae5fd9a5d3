//! The record format and value options against real PostgreSQL 15 + wal2json and
//! kinesalite: `record_format: debezium` for every op (insert, update, delete,
//! truncate, a key change, a snapshot read) against the field set and JSON types of
//! Debezium's documented examples, and `numeric_as_string`, `json_as_object` and
//! `timestamps: iso8601` on live and backfilled rows, in both wal2json formats.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::sink::kinesis::aggregate::deaggregate;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::support::case::{config_yaml, drop_slot, load};
use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::pg::{self, unique_name};

/// Debezium's documented change-event values for a PostgreSQL table, in the form its
/// JSON converter writes with `schemas.enable=false`, for a table `(id int primary
/// key, status text)` under `REPLICA IDENTITY DEFAULT` (so `before` holds the key
/// only). Our own values; what is compared is the field set and each field's JSON
/// type. The documentation shows a truncate without `before`/`after`; the converter
/// writes every field of the envelope's schema, unset ones as `null`.
fn debezium_examples() -> BTreeMap<&'static str, Value> {
    let source = |snapshot: &str| {
        json!({
            "version": "2.7.0.Final",
            "connector": "postgresql",
            "name": "inventory_server",
            "ts_ms": 1_700_000_000_123_i64,
            "snapshot": snapshot,
            "db": "inventory",
            "sequence": "[\"37104232\",\"37104288\"]",
            "schema": "public",
            "table": "orders",
            "txId": 771,
            "lsn": 37_104_288,
            "xmin": null
        })
    };
    let row = json!({"id": 7, "status": "shipped"});
    let key = json!({"id": 7});
    let event = |before: &Value, after: &Value, snapshot: &str, op: &str| json!({"before": before, "after": after, "source": source(snapshot), "op": op, "ts_ms": 1_700_000_000_456_i64, "transaction": null});
    BTreeMap::from([
        ("c", event(&Value::Null, &row, "false", "c")),
        ("u", event(&key, &row, "false", "u")),
        ("d", event(&key, &Value::Null, "false", "d")),
        ("t", event(&Value::Null, &Value::Null, "false", "t")),
        ("r", event(&Value::Null, &row, "true", "r")),
    ])
}

/// `v` with every leaf replaced by its JSON type: objects keep their keys.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        Value::Null => json!("null"),
        Value::Bool(_) => json!("boolean"),
        Value::Number(_) => json!("number"),
        Value::String(_) => json!("string"),
    }
}

/// Every user record of `records` (aggregates opened), as text.
fn user_texts(records: &[ReadRecord]) -> Vec<String> {
    records
        .iter()
        .flat_map(|r| deaggregate(&r.partition_key, &r.data).expect("a valid aggregate"))
        .map(|u| String::from_utf8(u.data).expect("UTF-8 records"))
        .collect()
}

/// A slot over `db`'s `public.<table>` with `keys`, started with `snapshot: initial`;
/// returns once the backfill has put its rows on the stream.
async fn start(
    db: &str,
    slot: &str,
    stream: &str,
    table: &str,
    format: u8,
    keys: &str,
    reads: usize,
) -> (Pipeline, Config, tempfile::TempDir) {
    kinesis::create_stream(&kinesalite().client(), stream, 1).await;
    let options = format!("{{format-version: {format}, add-tables: 'public.{table}'}}");
    let (config, dir) = load(&config_yaml(
        &[(slot, db, &options, stream)],
        &format!("      snapshot: initial\n      checkpoint: false\n{keys}"),
    ));
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: kinesalite().sdk_config(),
        },
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = &pipeline.slots[0].metrics;
        if m.backfill_rows_read() >= reads as u64 && m.backfill_tables_remaining() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "backfill not finished: {:?}",
            m.backfill_lines()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (pipeline, config, dir)
}

async fn stop(pipeline: Pipeline, db: &str, slot: &str) {
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(db, slot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn debezium_envelope_matches_the_documented_fields_and_types_for_every_op() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("dbz_ops"));
    pg.execute(
        &db,
        "CREATE TABLE orders (id int PRIMARY KEY, status text);
         INSERT INTO orders VALUES (7, 'shipped');",
    );
    let slot = unique_name("dbz_ops");
    let stream = unique_stream_name("dbz-ops");
    let (pipeline, _config, _dir) = start(
        &db,
        &slot,
        &stream,
        "orders",
        2,
        "      record_format: debezium\n",
        1,
    )
    .await;
    pg.execute(
        &db,
        "INSERT INTO orders VALUES (8, 'new');
         UPDATE orders SET status = 'paid' WHERE id = 8;
         UPDATE orders SET id = 9 WHERE id = 8;
         DELETE FROM orders WHERE id = 9;
         TRUNCATE orders;",
    );
    // read, insert, update, key change (delete + create), delete, truncate.
    let records =
        kinesis::read_until(&kinesalite().client(), &stream, 7, Duration::from_secs(30)).await;
    stop(pipeline, &db, &slot).await;
    let texts = user_texts(&records);
    let mut events: Vec<Value> = texts
        .iter()
        .map(|t| serde_json::from_str(t).unwrap())
        .collect();
    // Kinesis keeps each key's order, not the order between keys: in WAL order, a key
    // change's delete before its create (one change, one LSN).
    events.sort_by_key(|e| (e["source"]["lsn"].as_u64(), e["op"] != "d"));
    let ops: Vec<&str> = events.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["r", "c", "u", "d", "c", "d", "t"], "{texts:#?}");

    let examples = debezium_examples();
    for event in &events {
        let op = event["op"].as_str().unwrap();
        assert_eq!(
            shape(event),
            shape(&examples[op]),
            "op {op}: the fields and types of Debezium's example\n{event:#}"
        );
        let source = &event["source"];
        assert_eq!(source["connector"], "postgresql");
        assert_eq!(source["name"], slot.as_str());
        assert_eq!(source["db"], db.as_str());
        assert_eq!(
            (&source["schema"], &source["table"]),
            (&json!("public"), &json!("orders"))
        );
        let sequence: Vec<String> =
            serde_json::from_str(source["sequence"].as_str().unwrap()).unwrap();
        assert_eq!(sequence.len(), 2, "a JSON array of two strings");
        assert_eq!(
            sequence[1],
            source["lsn"].as_u64().unwrap().to_string(),
            "the change's LSN, as Debezium"
        );
        assert!(source["ts_ms"].as_i64().unwrap() > 1_700_000_000_000);
        assert!(event["ts_ms"].as_i64().unwrap() >= source["ts_ms"].as_i64().unwrap());
        let snapshot = if op == "r" { "incremental" } else { "false" };
        assert_eq!(source["snapshot"], snapshot, "op {op}");
    }
    // Values, and the key change as Debezium writes a primary-key update.
    assert_eq!(events[0]["after"], json!({"id": 7, "status": "shipped"}));
    assert_eq!(events[1]["after"], json!({"id": 8, "status": "new"}));
    assert_eq!(events[2]["before"], json!({"id": 8}));
    assert_eq!(events[2]["after"], json!({"id": 8, "status": "paid"}));
    assert_eq!(events[3]["before"], json!({"id": 8}));
    assert_eq!(events[4]["after"], json!({"id": 9, "status": "paid"}));
    assert_eq!(
        events[3]["source"]["lsn"], events[4]["source"]["lsn"],
        "one change, two events"
    );
    assert_eq!(events[5]["before"], json!({"id": 9}));
    // One transaction per statement, in commit order.
    let tx: Vec<u64> = events[1..]
        .iter()
        .map(|e| e["source"]["txId"].as_u64().unwrap())
        .collect();
    assert!(tx.windows(2).all(|w| w[0] <= w[1]), "{tx:?}");
    assert_eq!(
        tx[2], tx[3],
        "the key change's two events are one transaction's"
    );
}

/// The row both tests below write: `id` then every typed column.
const TYPED_COLUMNS: &str = "id int PRIMARY KEY, n numeric(40,10), i int8, f float8, \
     j jsonb, js json, ja jsonb[], jn jsonb, ts timestamptz, tsbc timestamptz, tn timestamp(3), \
     d date, dbc date, tt timetz, tinf timestamptz, t text";
const TYPED_VALUES: &str = "12345678901234567890.1234567890, 9223372036854775807, 1.5, \
     '{\"k\": [1, 2.50], \"big\": 123456789012345678901234567890}', '  {\"b\":1,  \"a\":[]} ', \
     ARRAY['{\"a\": 1}'::jsonb, NULL, '\"x,y\"', 'null'], NULL, '2024-01-02 03:04:05.123456+00', \
     '0044-03-15 12:00:00+00 BC', '2024-01-02 03:04:05.5', '2024-02-29', '0044-03-15 BC', \
     '03:04:05.123+05', 'infinity', '2024-01-02 03:04:05+00'";

/// Each column's value in a record's `data` (or `after`), as the exact JSON text.
fn raw_columns(text: &str, field: &str) -> BTreeMap<String, String> {
    let record: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text).unwrap();
    let row: BTreeMap<String, Box<RawValue>> = serde_json::from_str(record[field].get()).unwrap();
    row.into_iter()
        .filter(|(k, _)| k != "id")
        .map(|(k, v)| (k, v.get().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn type_options_rewrite_live_and_backfilled_values_alike_in_both_formats() {
    let expect: BTreeMap<&str, &str> = BTreeMap::from([
        ("n", r#""12345678901234567890.1234567890""#),
        ("i", r#""9223372036854775807""#),
        ("f", r#""1.5""#),
        (
            "j",
            r#"{"k": [1, 2.50], "big": 123456789012345678901234567890}"#,
        ),
        ("js", r#"{"b":1,  "a":[]}"#),
        ("ja", r#"[{"a": 1},null,"x,y",null]"#),
        ("jn", "null"),
        // The database's time zone is Asia/Kolkata: +05:30, and before 1900 its
        // local mean time, whose offset has seconds.
        ("ts", r#""2024-01-02T08:34:05.123456+05:30""#),
        ("tsbc", r#""-0043-03-15T17:53:28+05:53:28""#),
        ("tn", r#""2024-01-02T03:04:05.5""#),
        ("d", r#""2024-02-29""#),
        ("dbc", r#""-0043-03-15""#),
        ("tt", r#""03:04:05.123+05:00""#),
        ("tinf", r#""infinity""#),
        ("t", r#""2024-01-02 03:04:05+00""#),
    ]);
    let options =
        "      numeric_as_string: true\n      json_as_object: true\n      timestamps: iso8601\n";
    for (format, record_format, field) in [
        (1u8, "native", "data"),
        (2, "native", "data"),
        (1, "debezium", "after"),
        (2, "debezium", "after"),
    ] {
        let pg = pg::shared();
        let name = unique_name(&format!("types_v{format}_{record_format}"));
        let db = pg.create_database(&name);
        pg.execute(
            &db,
            &format!(
                "ALTER DATABASE {db} SET timezone TO 'Asia/Kolkata';
                 CREATE TABLE ty ({TYPED_COLUMNS});
                 INSERT INTO ty VALUES (1, {TYPED_VALUES});"
            ),
        );
        let stream = unique_stream_name("types");
        let keys = format!("{options}      record_format: {record_format}\n");
        let (pipeline, _config, _dir) = start(&db, &name, &stream, "ty", format, &keys, 1).await;
        pg.execute(&db, &format!("INSERT INTO ty VALUES (2, {TYPED_VALUES});"));
        let records =
            kinesis::read_until(&kinesalite().client(), &stream, 2, Duration::from_secs(30)).await;
        stop(pipeline, &db, &name).await;
        let texts = user_texts(&records);
        assert_eq!(texts.len(), 2, "{texts:#?}");
        let what = format!("format-version {format}, {record_format}");
        let read = raw_columns(&texts[0], field);
        let insert = raw_columns(&texts[1], field);
        for (column, value) in &expect {
            assert_eq!(
                insert.get(*column).map(String::as_str),
                Some(*value),
                "{what}: column {column} of the live insert"
            );
        }
        assert_eq!(
            read, insert,
            "{what}: a backfilled row is written byte for byte as the live row"
        );
    }
}
