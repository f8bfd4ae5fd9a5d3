//! The Debezium PostgreSQL connector's change-event envelope, in its schema-less JSON
//! form (as with `value.converter.schemas.enable=false`), for `record_format: debezium`
//! and `tail --format debezium`.
//!
//! Owns the mapping, in one writer ([`write`]): the encoder calls it with a change's
//! columns (one pass, no native record in between) and [`envelope`] with a native
//! record's parts, so both say the same. It never changes a value: columns are
//! written by the caller, as the slot's value options say.
//!
//! Unchanged TOAST: wal2json leaves such a column out of an update's new row, so it is
//! absent from `after` as from the native `data`. A mode that fills it with a
//! placeholder (Debezium's `unavailable.value.placeholder`) does so in the change's
//! columns before the encoder runs, and so applies here unchanged; a mode that lists
//! the columns has no Debezium field, and would add its list in [`write`] after `after`.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::types::ValueOptions;
use super::TxnContext;
use crate::decode::{Change, Column, Kind};
use crate::lsn::Lsn;

/// `source.version`: this project and its version (we are not Debezium).
pub const VERSION: &str = concat!("pg-cdc-to-kinesis-", env!("CARGO_PKG_VERSION"));

/// Why a record has no Debezium form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DebeziumError {
    #[error("not a pg-cdc-to-kinesis record (a JSON object with a `kind`): {0}")]
    NotARecord(String),
    #[error("unknown record kind `{0}`")]
    UnknownKind(String),
}

/// The fields of a native record the envelope uses; column values stay raw JSON text.
#[derive(Deserialize)]
struct Native<'a> {
    kind: String,
    database: Option<String>,
    schema: Option<String>,
    table: Option<String>,
    timestamp: Option<String>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    #[serde(borrow)]
    old: Option<&'a RawValue>,
    lsn: Option<String>,
    commit_lsn: Option<String>,
    xid: Option<u64>,
}

/// A record that is already an envelope (a `record_format: debezium` slot's).
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    op: Option<&'a str>,
    #[serde(borrow)]
    source: Option<&'a RawValue>,
}

/// `before` or `after`.
enum Row<'a> {
    Null,
    /// A native record's `data`/`old`, as written.
    Raw(&'a RawValue),
    /// A change's columns, written by the caller's column writer.
    Columns(&'a [Column]),
}

/// What `source` and `ts_ms` say.
struct Meta<'a> {
    /// The slot: Debezium's logical server name.
    pub name: &'a str,
    pub db: Option<&'a str>,
    pub schema: Option<&'a str>,
    pub table: Option<&'a str>,
    /// The commit time, in ms since 1970.
    pub commit_ms: Option<i64>,
    /// A backfilled row.
    pub snapshot: bool,
    pub xid: Option<u64>,
    /// The change's own LSN (format-version 2), else the commit's is used.
    pub lsn: Option<Lsn>,
    pub commit_lsn: Option<Lsn>,
    /// When the envelope is written: the envelope's own `ts_ms`.
    pub processed_ms: i64,
}

/// Milliseconds since 1970 now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The envelope of `change` as `kind` (a key change's halves are a delete and a
/// create, as Debezium writes a primary-key update), built in one pass from the
/// change: no native record is written and parsed again.
pub(super) fn payload(
    change: &Change,
    kind: Kind,
    txn: &TxnContext,
    slot: &str,
    database: &str,
    values: ValueOptions,
) -> Vec<u8> {
    let (op, before, after) = match kind {
        Kind::Insert => ("c", Row::Null, Row::Columns(&change.columns)),
        Kind::Update if change.identity.is_empty() => {
            ("u", Row::Null, Row::Columns(&change.columns))
        }
        Kind::Update => (
            "u",
            Row::Columns(&change.identity),
            Row::Columns(&change.columns),
        ),
        Kind::Delete => ("d", Row::Columns(&change.identity), Row::Null),
        Kind::Truncate => ("t", Row::Null, Row::Null),
        Kind::Read => ("r", Row::Null, Row::Columns(&change.columns)),
    };
    let meta = Meta {
        name: slot,
        db: Some(database),
        schema: Some(&change.schema),
        table: Some(&change.table),
        commit_ms: txn
            .timestamp
            .as_deref()
            .and_then(crate::metrics::parse_pg_timestamp_ms),
        snapshot: kind == Kind::Read,
        xid: txn.xid,
        lsn: change.lsn,
        commit_lsn: txn.commit_lsn,
        processed_ms: now_ms(),
    };
    let mut out = Vec::with_capacity(256 + change.columns.len() * 24);
    write(&mut out, op, before, after, &meta, &|out, cols| {
        super::push_columns(out, cols, values)
    });
    out
}

/// Write one envelope, fields in the order of Debezium's documented examples:
///
/// - `op`: `c` insert, `u` update, `d` delete, `t` truncate, `r` read (a backfilled
///   row, whose `source.snapshot` is `"incremental"`: it was read in chunks while
///   streaming, like Debezium's incremental snapshots; `"false"` otherwise);
/// - `source.ts_ms`: the commit time (the processing time if wal2json sent none:
///   `include-timestamp: false`);
///   `txId`: the `xid`; `lsn`: the change's LSN as a number (the commit's when the
///   change has none: format-version 1, backfilled rows); `sequence`: as Debezium, a
///   JSON string holding `["<commit LSN>","<LSN>"]`, decimal; `xmin`: `null`, as
///   Debezium writes it unless asked to fetch it; `transaction`: `null`, as Debezium
///   writes it without `provide.transaction.metadata`.
fn write(
    out: &mut Vec<u8>,
    op: &str,
    before: Row<'_>,
    after: Row<'_>,
    meta: &Meta<'_>,
    columns: &dyn Fn(&mut Vec<u8>, &[Column]),
) {
    let row = |out: &mut Vec<u8>, row: Row<'_>| match row {
        Row::Null => out.extend_from_slice(b"null"),
        Row::Raw(raw) => out.extend_from_slice(raw.get().as_bytes()),
        Row::Columns(cols) => columns(out, cols),
    };
    let text = |out: &mut Vec<u8>, s: Option<&str>| match s {
        Some(s) => super::push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    };
    let number = |out: &mut Vec<u8>, n: Option<u64>| match n {
        Some(n) => out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes()),
        None => out.extend_from_slice(b"null"),
    };
    let lsn = meta.lsn.or(meta.commit_lsn);
    out.extend_from_slice(b"{\"before\":");
    row(out, before);
    out.extend_from_slice(b",\"after\":");
    row(out, after);
    out.extend_from_slice(b",\"source\":{\"version\":");
    text(out, Some(VERSION));
    out.extend_from_slice(b",\"connector\":\"postgresql\",\"name\":");
    text(out, Some(meta.name));
    out.extend_from_slice(b",\"ts_ms\":");
    let ms = meta.commit_ms.unwrap_or(meta.processed_ms);
    out.extend_from_slice(itoa::Buffer::new().format(ms).as_bytes());
    out.extend_from_slice(b",\"snapshot\":");
    text(
        out,
        Some(if meta.snapshot {
            "incremental"
        } else {
            "false"
        }),
    );
    out.extend_from_slice(b",\"db\":");
    text(out, meta.db);
    out.extend_from_slice(b",\"sequence\":");
    // A JSON string holding a JSON array of two decimal LSNs as strings:
    // "[\"123\",\"456\"]" (Debezium's form), written without a `format!`.
    let part = |out: &mut Vec<u8>, l: Option<Lsn>| match l {
        Some(l) => {
            out.extend_from_slice(b"\\\"");
            out.extend_from_slice(itoa::Buffer::new().format(l.0).as_bytes());
            out.extend_from_slice(b"\\\"");
        }
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(b"\"[");
    part(out, meta.commit_lsn.or(lsn));
    out.push(b',');
    part(out, lsn);
    out.extend_from_slice(b"]\"");
    out.extend_from_slice(b",\"schema\":");
    text(out, meta.schema);
    out.extend_from_slice(b",\"table\":");
    text(out, meta.table);
    out.extend_from_slice(b",\"txId\":");
    number(out, meta.xid);
    out.extend_from_slice(b",\"lsn\":");
    number(out, lsn.map(|l| l.0));
    out.extend_from_slice(b",\"xmin\":null},\"op\":");
    text(out, Some(op));
    out.extend_from_slice(b",\"ts_ms\":");
    out.extend_from_slice(itoa::Buffer::new().format(meta.processed_ms).as_bytes());
    // Debezium's transaction metadata block, off unless asked for.
    out.extend_from_slice(b",\"transaction\":null}");
}

/// The Debezium envelope (compact JSON) of `record`, a native record as the README
/// documents it, for the connector named `name` (the slot), processed at
/// `processed_ms` (ms since 1970, the envelope's own `ts_ms`). A record that already
/// is an envelope is returned as it is.
///
/// `before`: `old` (the replica identity: the key, or the whole row under `REPLICA
/// IDENTITY FULL`), and for a delete without `old` its `data`; `null` for inserts,
/// reads and truncates. `after`: `data`; `null` for deletes and truncates.
pub fn envelope(record: &str, name: &str, processed_ms: i64) -> Result<String, DebeziumError> {
    let r: Native<'_> = match serde_json::from_str(record) {
        Ok(r) => r,
        Err(e) => {
            return match serde_json::from_str::<Probe<'_>>(record) {
                Ok(Probe {
                    op: Some(_),
                    source: Some(_),
                }) => Ok(record.to_string()),
                _ => Err(DebeziumError::NotARecord(e.to_string())),
            }
        }
    };
    fn raw(v: Option<&RawValue>) -> Row<'_> {
        v.map_or(Row::Null, Row::Raw)
    }
    let (op, before, after) = match r.kind.as_str() {
        "insert" => ("c", Row::Null, raw(r.data)),
        "update" => ("u", raw(r.old), raw(r.data)),
        "delete" => ("d", raw(r.old.or(r.data)), Row::Null),
        "truncate" => ("t", Row::Null, Row::Null),
        "read" => ("r", Row::Null, raw(r.data)),
        other => return Err(DebeziumError::UnknownKind(other.to_string())),
    };
    let parse = |l: &Option<String>| l.as_deref().and_then(|s| s.parse::<Lsn>().ok());
    let meta = Meta {
        name,
        db: r.database.as_deref(),
        schema: r.schema.as_deref(),
        table: r.table.as_deref(),
        commit_ms: r
            .timestamp
            .as_deref()
            .and_then(crate::metrics::parse_pg_timestamp_ms),
        snapshot: r.kind == "read",
        xid: r.xid,
        lsn: parse(&r.lsn),
        commit_lsn: parse(&r.commit_lsn),
        processed_ms,
    };
    let mut out = Vec::with_capacity(record.len() + 256);
    write(&mut out, op, before, after, &meta, &|_, _| {});
    String::from_utf8(out).map_err(|e| DebeziumError::NotARecord(e.to_string()))
}

#[cfg(test)]
mod tests {
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
        let col =
            |name: &str, raw: &str| Column::new(name, RawValue::from_string(raw.into()).unwrap());
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
            let mut c = Column::new(name, RawValue::from_string(raw.into()).unwrap());
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
}
