//! Unit tests of the Debezium envelope: each kind's op, field order and exact values,
//! and the encoder's Debezium records against what `tail` makes of native ones.

use super::*;
use serde_json::{json, Value};

const COMMON: &str = r#""database":"shop","schema":"public","table":"orders","timestamp":"2026-11-23 23:29:15.677976+00","lsn":"0/150A278","commit_lsn":"0/150A618","xid":725"#;

fn native(kind: &str, rest: &str) -> String {
    format!(r#"{{"kind":"{kind}",{COMMON}{rest}}}"#)
}

fn source(snapshot: &str) -> Value {
    json!({
        "version": VERSION,
        "connector": "postgresql",
        "name": "orders_slot",
        "ts_ms": 1_795_476_555_677_i64,
        "snapshot": snapshot,
        "db": "shop",
        "sequence": "[\"22062616\",\"22061688\"]",
        "schema": "public",
        "table": "orders",
        "txId": 725,
        "lsn": 22_061_688,
        "xmin": null,
    })
}

fn check(kind: &str, rest: &str, op: &str, before: Value, after: Value, snapshot: &str) {
    let got = envelope(&native(kind, rest), "orders_slot", 42).unwrap();
    let got: Value = serde_json::from_str(&got).unwrap();
    let expect = json!({"before": before, "after": after, "source": source(snapshot), "op": op, "ts_ms": 42, "transaction": null});
    assert_eq!(got, expect, "{kind}");
}

#[test]
fn every_kind_maps_to_its_op_with_before_and_after() {
    let row = json!({"id": 2, "amount": 21.5, "status": "paid"});
    let data = r#","data":{"id":2,"amount":21.5,"status":"paid"}"#;
    check(
        "insert",
        &format!("{data},\"seq\":0"),
        "c",
        Value::Null,
        row.clone(),
        "false",
    );
    check(
        "update",
        &format!(r#"{data},"old":{{"id":2}},"seq":1"#),
        "u",
        json!({"id": 2}),
        row.clone(),
        "false",
    );
    check(
        "delete",
        r#","data":{"id":5},"old":{"id":5},"seq":2"#,
        "d",
        json!({"id": 5}),
        Value::Null,
        "false",
    );
    check(
        "delete",
        r#","data":{"id":6},"seq":3"#,
        "d",
        json!({"id": 6}),
        Value::Null,
        "false",
    );
    check(
        "truncate",
        r#","data":{},"seq":0"#,
        "t",
        Value::Null,
        Value::Null,
        "false",
    );
    check(
        "read",
        &format!(r#"{data},"seq":0,"snapshot":{{"table":"public.orders","chunk":3}}"#),
        "r",
        Value::Null,
        row,
        "incremental",
    );
}

#[test]
fn fields_come_in_debeziums_order_and_values_keep_every_digit() {
    let got = envelope(
        &native(
            "insert",
            r#","data":{"n":12345678901234567890.0123456789,"m":21.00},"seq":0"#,
        ),
        "s",
        7,
    )
    .unwrap();
    let expect = format!(
        r#"{{"before":null,"after":{{"n":12345678901234567890.0123456789,"m":21.00}},"source":{{"version":"{VERSION}","connector":"postgresql","name":"s","ts_ms":1795476555677,"snapshot":"false","db":"shop","sequence":"[\"22062616\",\"22061688\"]","schema":"public","table":"orders","txId":725,"lsn":22061688,"xmin":null}},"op":"c","ts_ms":7,"transaction":null}}"#
    );
    assert_eq!(got, expect);
}

/// The records our encoder writes, read and backfilled rows included, map to the
/// op of their kind.
#[test]
fn the_encoders_records_map_to_their_ops() {
    use crate::config::PartitionKey;
    use crate::decode::{Change, Column, Kind};
    use crate::record::{RecordEncoder, TxnContext};
    let col = |name: &str, raw: &str| Column::new(name, crate::decode::Json::parse(raw).unwrap());
    let change = |kind, columns, identity| Change {
        lsn: Some(Lsn(0x10)),
        ..Change::of_table(kind, "orders", columns, identity)
    };
    let txn = TxnContext {
        xid: Some(9),
        timestamp: Some("1970-01-01 00:00:01+00".into()),
        commit_lsn: Some(Lsn(0x20)),
    };
    let mut enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
    let mut records = Vec::new();
    for c in [
        change(Kind::Insert, vec![col("id", "1"), col("v", "1.50")], vec![]),
        change(
            Kind::Update,
            vec![col("id", "1"), col("v", "2")],
            vec![col("id", "1")],
        ),
        change(Kind::Delete, vec![], vec![col("id", "1")]),
        change(Kind::Truncate, vec![], vec![]),
    ] {
        let seq = records.len() as u64;
        enc.encode_into(&c, &txn, seq, &mut records).unwrap();
    }
    records.push(enc.encode_read(
        &change(Kind::Read, vec![col("id", "2")], vec![]),
        &txn,
        4,
        1,
    ));
    let got: Vec<Value> = records
        .iter()
        .map(|r| {
            let text = std::str::from_utf8(&r.data).unwrap();
            serde_json::from_str(&envelope(text, "slot", 0).unwrap()).unwrap()
        })
        .collect();
    let ops: Vec<&str> = got.iter().map(|e| e["op"].as_str().unwrap()).collect();
    assert_eq!(ops, ["c", "u", "d", "t", "r"]);
    assert_eq!(got[0]["after"], json!({"id": 1, "v": 1.5}));
    assert_eq!(got[1]["before"], json!({"id": 1}));
    assert_eq!(got[2]["before"], json!({"id": 1}));
    assert!(got[2]["after"].is_null() && got[3]["after"].is_null());
    assert_eq!(got[4]["source"]["snapshot"], "incremental");
    assert_eq!(got[4]["after"], json!({"id": 2}));
    assert_eq!(got[0]["source"]["ts_ms"], 1000);
    assert_eq!(got[0]["source"]["txId"], 9);
    assert_eq!(got[0]["source"]["lsn"], 0x10);
}

/// A `record_format: debezium` slot writes, in one pass, what `tail --format
/// debezium` makes of the same change's native record (value options included),
/// but for the processing time; a key change is a delete then a create.
#[test]
fn a_debezium_slot_writes_what_tail_makes_of_the_native_record() {
    use crate::config::{FormatConfig, PartitionKey, RecordFormat, Timestamps};
    use crate::decode::{Change, ColumnType, Kind};
    use crate::record::{RecordEncoder, TxnContext};
    let col = |name: &str, raw: &str, ty| {
        let mut c = Column::new(name, crate::decode::Json::parse(raw).unwrap());
        c.ty = ty;
        c
    };
    let row = |id: &str| {
        vec![
            col("id", id, ColumnType::Other),
            col("n", "12.50", ColumnType::Other),
            col("j", r#""{\"a\": 1}""#, ColumnType::Json),
            col(
                "t",
                r#""2024-01-02 03:04:05.5+00""#,
                ColumnType::TimestampTz,
            ),
        ]
    };
    let change = |kind, columns, identity| Change {
        lsn: Some(Lsn(0x10)),
        ..Change::of_table(kind, "orders", columns, identity)
    };
    let txn = TxnContext {
        xid: Some(9),
        timestamp: Some("1970-01-01 00:00:01+00".into()),
        commit_lsn: Some(Lsn(0x20)),
    };
    let options = FormatConfig {
        record_format: RecordFormat::Native,
        numeric_as_string: true,
        json_as_object: true,
        timestamps: Timestamps::Iso8601,
    };
    let debezium = FormatConfig {
        record_format: RecordFormat::Debezium,
        ..options
    };
    let changes = [
        change(Kind::Insert, row("1"), vec![]),
        change(
            Kind::Update,
            row("1"),
            vec![col("id", "1", ColumnType::Other)],
        ),
        change(Kind::Update, row("2"), row("1")),
        change(
            Kind::Delete,
            vec![],
            vec![col("id", "2", ColumnType::Other)],
        ),
        change(Kind::Truncate, vec![], vec![]),
    ];
    let encode = |format: &FormatConfig| {
        let mut enc =
            RecordEncoder::new("shop", PartitionKey::PrimaryKey).with_format("slot", format);
        let mut out = Vec::new();
        for c in &changes {
            let seq = out.len() as u64;
            enc.encode_into(c, &txn, seq, &mut out).unwrap();
        }
        out.push(enc.encode_read(&change(Kind::Read, row("3"), vec![]), &txn, 6, 1));
        out
    };
    let (native, direct) = (encode(&options), encode(&debezium));
    assert_eq!(native.len(), 7);
    let mut ops = Vec::new();
    for (n, d) in native.iter().zip(&direct) {
        assert_eq!(
            n.partition_key, d.partition_key,
            "the partition key stays ours"
        );
        assert_eq!((n.barrier, n.background), (d.barrier, d.background));
        let mut d: Value = serde_json::from_slice(&d.data).unwrap();
        let via_tail = envelope(std::str::from_utf8(&n.data).unwrap(), "slot", 0).unwrap();
        let mut via_tail: Value = serde_json::from_str(&via_tail).unwrap();
        assert!(
            d["ts_ms"].as_i64().unwrap() > 1_700_000_000_000,
            "processing time"
        );
        d["ts_ms"] = json!(0);
        if d["op"] == "u" || d["op"] == "c" || d["op"] == "r" {
            assert_eq!(
                d["after"],
                json!({"id": d["after"]["id"], "n": "12.50", "j": {"a": 1}, "t": "2024-01-02T03:04:05.5Z"})
            );
        }
        // A native delete writes its key into `data` too; Debezium has no `after`.
        via_tail["ts_ms"] = json!(0);
        assert_eq!(d, via_tail);
        ops.push(d["op"].as_str().unwrap().to_string());
    }
    assert_eq!(ops, ["c", "u", "d", "c", "d", "t", "r"]);
    let key_change: Vec<Value> = direct[2..4]
        .iter()
        .map(|r| serde_json::from_slice(&r.data).unwrap())
        .collect();
    assert_eq!(key_change[0]["before"]["id"], "1");
    assert!(key_change[0]["after"].is_null() && key_change[1]["before"].is_null());
    assert_eq!(key_change[1]["after"]["id"], "2");
    let read: Value = serde_json::from_slice(&direct[6].data).unwrap();
    assert_eq!(read["source"]["snapshot"], "incremental");
    assert_eq!(read["source"]["sequence"], "[\"32\",\"16\"]");
}

#[test]
fn a_stream_of_envelopes_passes_through_tail_as_it_is() {
    let e = envelope(&native("insert", r#","data":{"id":1},"seq":0"#), "s", 1).unwrap();
    assert_eq!(envelope(&e, "other", 2).unwrap(), e);
}

#[test]
fn records_that_are_not_ours_are_refused() {
    assert!(matches!(
        envelope("[1]", "s", 1),
        Err(DebeziumError::NotARecord(_))
    ));
    assert!(matches!(
        envelope("not json", "s", 1),
        Err(DebeziumError::NotARecord(_))
    ));
    assert_eq!(
        envelope(r#"{"kind":"upsert"}"#, "s", 1),
        Err(DebeziumError::UnknownKind("upsert".into()))
    );
}
