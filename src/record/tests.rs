//! Unit tests of the record encoder: native payloads, key changes, partition keys,
//! unkeyable changes and truncate barriers.

use super::*;
use crate::decode::Column;

fn col(name: &str, raw: &str) -> Column {
    Column::new(name, crate::decode::Json::parse(raw).unwrap())
}

fn change(kind: Kind, columns: Vec<Column>, identity: Vec<Column>) -> Change {
    Change {
        lsn: Some(Lsn(0x10)),
        ..Change::of_table(kind, "orders", columns, identity)
    }
}

/// The one record `change` encodes to.
fn encode(enc: &RecordEncoder, c: &Change, txn: &TxnContext, seq: u64) -> Record {
    let mut out = Vec::new();
    assert_eq!(enc.clone().encode_into(c, txn, seq, &mut out), Ok(1));
    out.pop().unwrap()
}

fn txn() -> TxnContext {
    TxnContext {
        xid: Some(7),
        timestamp: Some("2026-01-01 00:00:00+00".into()),
        commit_lsn: Some(Lsn(0x20)),
    }
}

#[test]
fn insert_payload_keeps_exact_values() {
    let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
    let big = "12345678901234567890.1234567890";
    let c = change(
        Kind::Insert,
        vec![
            col("id", "1"),
            col("amount", big),
            col("note", "\"a\\\"b\\nc é\""),
        ],
        vec![],
    );
    let rec = encode(&enc, &c, &txn(), 3);
    let text = String::from_utf8(rec.data.clone()).unwrap();
    assert!(text.contains(&format!("\"amount\":{big}")), "{text}");
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    assert_eq!(v["kind"], "insert");
    assert_eq!(v["database"], "shop");
    assert_eq!(v["schema"], "public");
    assert_eq!(v["table"], "orders");
    assert_eq!(v["timestamp"], "2026-01-01 00:00:00+00");
    assert_eq!(v["data"]["note"], "a\"b\nc é");
    assert_eq!(v["lsn"], "0/10");
    assert_eq!(v["commit_lsn"], "0/20");
    assert_eq!(v["xid"], 7);
    assert_eq!(v["seq"], 3);
    assert!(v.get("old").is_none());
    assert_eq!(rec.partition_key, "public.orders|1");
}

#[test]
fn delete_carries_its_key_in_data_and_old() {
    let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
    let c = change(Kind::Delete, vec![], vec![col("id", "42")]);
    let rec = encode(&enc, &c, &TxnContext::default(), 0);
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    assert_eq!(v["kind"], "delete");
    assert_eq!(v["data"]["id"], 42);
    assert_eq!(v["old"]["id"], 42);
    assert_eq!(v["timestamp"], serde_json::Value::Null);
    assert_eq!(v["xid"], serde_json::Value::Null);
    // Same key as the insert of the same row, so both land on one shard in order.
    assert_eq!(rec.partition_key, "public.orders|42");
}

#[test]
fn primary_key_change_is_a_delete_under_the_old_key_then_an_insert_under_the_new() {
    let mut enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
    let c = change(
        Kind::Update,
        vec![col("id", "30"), col("v", "\"x\"")],
        vec![col("id", "3")],
    );
    let mut out = Vec::new();
    assert_eq!(enc.encode_into(&c, &txn(), 4, &mut out), Ok(2));
    let v: Vec<serde_json::Value> = out
        .iter()
        .map(|r| serde_json::from_slice(&r.data).unwrap())
        .collect();
    assert_eq!(out[0].partition_key, "public.orders|3");
    assert_eq!(v[0]["kind"], "delete");
    assert_eq!(v[0]["data"], serde_json::json!({"id": 3}));
    assert_eq!(out[1].partition_key, "public.orders|30");
    assert_eq!(v[1]["kind"], "insert");
    assert_eq!(v[1]["data"], serde_json::json!({"id": 30, "v": "x"}));
    assert_eq!(v[1]["old"], serde_json::json!({"id": 3}));
    for (i, v) in v.iter().enumerate() {
        assert_eq!(v["key_change"], true);
        assert_eq!(v["seq"], 4 + i);
        assert_eq!(v["commit_lsn"], "0/20");
    }
}

#[test]
fn update_keeping_its_key_stays_one_record_without_the_mark() {
    let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
    // The second column is missing from the new row: an unchanged TOASTed value.
    let mut c = change(Kind::Update, vec![col("id", "3")], vec![col("id", "3")]);
    c.pk = ["id".to_string(), "big".to_string()].into();
    c.identity.push(col("big", "\"t\""));
    let rec = encode(&enc, &c, &txn(), 0);
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    assert_eq!(v["kind"], "update");
    assert!(v.get("key_change").is_none(), "{v}");
    assert_eq!(rec.partition_key, "public.orders|3|\"t\"");
    // Under `table` the key never depends on the row: no pair.
    let moved = change(Kind::Update, vec![col("id", "4")], vec![col("id", "3")]);
    let rec = encode(
        &RecordEncoder::new("d", PartitionKey::Table),
        &moved,
        &txn(),
        0,
    );
    assert_eq!(rec.partition_key, "public.orders");
}

#[test]
fn changed_partition_columns_are_a_key_change_too() {
    let mut enc = RecordEncoder::new("d", PartitionKey::Columns(vec!["region".into()]));
    let c = change(
        Kind::Update,
        vec![col("id", "1"), col("region", "\"us\"")],
        vec![col("id", "1"), col("region", "\"eu\"")],
    );
    let mut out = Vec::new();
    assert_eq!(enc.encode_into(&c, &txn(), 0, &mut out), Ok(2));
    let keys: Vec<&str> = out.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(keys, ["public.orders|\"eu\"", "public.orders|\"us\""]);
}

#[test]
fn delete_without_its_key_in_the_identity_is_refused_not_keyed_by_table() {
    // REPLICA IDENTITY USING INDEX on a unique index that lacks the primary key.
    let c = change(Kind::Delete, vec![], vec![col("u", "11")]);
    let mut out = Vec::new();
    let err = RecordEncoder::new("d", PartitionKey::PrimaryKey)
        .encode_into(&c, &txn(), 0, &mut out)
        .unwrap_err();
    assert_eq!(err.missing, ["id"]);
    assert_eq!(err.lsn, Lsn(0x10));
    let text = err.to_string();
    assert!(
        text.contains("public.orders")
            && text.contains("0/10")
            && text.contains("REPLICA IDENTITY FULL"),
        "{text}"
    );
    assert!(out.is_empty());
    // An update can tell: its new row has the column, its identity does not.
    let cols = PartitionKey::Columns(vec!["region".into()]);
    let upd = change(
        Kind::Update,
        vec![col("id", "1"), col("region", "\"us\"")],
        vec![col("id", "1")],
    );
    assert!(RecordEncoder::new("d", cols.clone())
        .encode_into(&upd, &txn(), 0, &mut out)
        .is_err());
    // A delete alone cannot (the table may lack the column): the start-up check
    // covers it; once a row of the table showed the column, it can.
    let del = change(Kind::Delete, vec![], vec![col("id", "1")]);
    let mut enc = RecordEncoder::new("d", cols);
    assert_eq!(enc.encode_into(&del, &txn(), 0, &mut out), Ok(1));
    let ins = change(
        Kind::Insert,
        vec![col("id", "1"), col("region", "\"eu\"")],
        vec![],
    );
    assert_eq!(enc.encode_into(&ins, &txn(), 0, &mut out), Ok(1));
    assert!(enc.encode_into(&del, &txn(), 0, &mut out).is_err());
}

#[test]
fn partition_key_rules() {
    let c = change(
        Kind::Insert,
        vec![col("id", "5"), col("region", "\"eu\"")],
        vec![],
    );
    assert_eq!(
        RecordEncoder::new("d", PartitionKey::Table).partition_key(&c),
        "public.orders"
    );
    assert_eq!(
        RecordEncoder::new("d", PartitionKey::Fixed("all".into())).partition_key(&c),
        "all"
    );
    let cols = PartitionKey::Columns(vec!["region".into(), "id".into()]);
    assert_eq!(
        RecordEncoder::new("d", cols).partition_key(&c),
        "public.orders|\"eu\"|5"
    );
    let mut no_pk = c.clone();
    no_pk.pk = Default::default();
    assert_eq!(
        RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&no_pk),
        "public.orders"
    );
    let missing = PartitionKey::Columns(vec!["nope".into()]);
    assert_eq!(
        RecordEncoder::new("d", missing).partition_key(&c),
        "public.orders"
    );
}

#[test]
fn long_partition_keys_are_hashed() {
    let long = format!("\"{}\"", "x".repeat(300));
    let c = change(Kind::Insert, vec![col("id", &long)], vec![]);
    let key = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|ch| ch.is_ascii_hexdigit()));
    let again = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
    assert_eq!(
        key, again,
        "hashing must be deterministic so a row keeps its shard"
    );
}

#[test]
fn keys_over_256_bytes_are_hashed_even_when_under_256_characters() {
    // 130 two-byte characters: 130 characters, 260 bytes plus the table prefix.
    // Kinesis refuses such a key with InvalidArgumentException.
    let wide = format!("\"{}\"", "é".repeat(130));
    let c = change(Kind::Insert, vec![col("id", &wide)], vec![]);
    let key = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
    assert!(key.len() <= MAX_PARTITION_KEY_BYTES, "{key}");
    assert_eq!(key.len(), 64);
    let short = change(Kind::Insert, vec![col("id", "\"é\"")], vec![]);
    assert_eq!(
        RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&short),
        "public.orders|\"é\""
    );
}

#[test]
fn truncate_is_a_barrier_scoped_to_its_table() {
    let enc = RecordEncoder::new("d", PartitionKey::PrimaryKey);
    let t = encode(&enc, &change(Kind::Truncate, vec![], vec![]), &txn(), 0);
    let i = encode(
        &enc,
        &change(Kind::Insert, vec![col("id", "1")], vec![]),
        &txn(),
        1,
    );
    assert!(t.barrier);
    assert!(!i.barrier);
    assert_eq!(t.table, i.table, "one scope for every change of the table");
    let mut other = change(Kind::Insert, vec![col("id", "1")], vec![]);
    other.table = "customers".into();
    assert_ne!(encode(&enc, &other, &txn(), 0).table, i.table);
}

#[test]
fn a_read_record_carries_its_chunk_and_the_live_key() {
    let mut enc = RecordEncoder::new("d", PartitionKey::PrimaryKey);
    let row = change(Kind::Read, vec![col("id", "7"), col("v", "\"x\"")], vec![]);
    let rec = enc.encode_read(&row, &txn(), 4, 2);
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    assert_eq!(v["kind"], "read");
    assert_eq!(v["data"], serde_json::json!({"id": 7, "v": "x"}));
    assert_eq!(v["seq"], 4);
    assert_eq!(
        v["snapshot"],
        serde_json::json!({"table": "public.orders", "chunk": 2})
    );
    assert!(v.get("old").is_none() && v.get("key_change").is_none());
    let live = change(Kind::Insert, vec![col("id", "7")], vec![]);
    assert_eq!(
        rec.partition_key,
        enc.partition_key(&live),
        "same key as the row's changes"
    );
    assert!(!rec.barrier);
    assert!(rec.background, "the sink sends live changes first");
}

#[test]
fn truncate_has_empty_data() {
    let c = change(Kind::Truncate, vec![], vec![]);
    let rec = encode(
        &RecordEncoder::new("d", PartitionKey::PrimaryKey),
        &c,
        &txn(),
        0,
    );
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    assert_eq!(v["kind"], "truncate");
    assert_eq!(v["data"], serde_json::json!({}));
    assert_eq!(rec.partition_key, "public.orders");
}
