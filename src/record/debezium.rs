//! Our native record → the Debezium PostgreSQL connector's change-event envelope, in its
//! schema-less JSON form (as with `value.converter.schemas.enable=false`).
//!
//! Owns the mapping, in one function ([`envelope`]), so that `tail --format debezium`
//! and a `record_format: debezium` encoder say the same. It never changes a value: a
//! column's JSON is copied as it is.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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

/// Field order as in Debezium's documented examples.
#[derive(Serialize)]
struct Envelope<'a> {
    before: Option<&'a RawValue>,
    after: Option<&'a RawValue>,
    source: Source<'a>,
    op: &'static str,
    ts_ms: i64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Source<'a> {
    version: &'static str,
    connector: &'static str,
    name: &'a str,
    #[serde(rename = "ts_ms")]
    ts_ms: Option<i64>,
    snapshot: &'static str,
    db: Option<&'a str>,
    sequence: String,
    schema: Option<&'a str>,
    table: Option<&'a str>,
    tx_id: Option<u64>,
    lsn: Option<u64>,
}

/// The Debezium envelope (compact JSON) of `record`, a native record as the README
/// documents it, for the connector named `name` (the slot), processed at
/// `processed_ms` (ms since 1970, the envelope's own `ts_ms`).
///
/// - `op`: `c` insert, `u` update, `d` delete, `t` truncate, `r` read (a backfilled
///   row, whose `source.snapshot` is `"incremental"`: it was read while streaming,
///   like Debezium's incremental snapshots; `"false"` otherwise).
/// - `before`: `old` (the replica identity: the key, or the whole row under `REPLICA
///   IDENTITY FULL`), and for a delete without `old` its `data`; `null` for inserts,
///   reads and truncates. `after`: `data`; `null` for deletes and truncates. Values
///   keep their exact JSON text.
/// - `source.ts_ms`: the commit time; `txId`: the `xid`; `lsn`: the change's LSN as a
///   number (`commit_lsn` when the record has none); `sequence`: Debezium's
///   `["<last commit LSN>","<LSN>"]` as a JSON string, whose first element we do not
///   know and give as `null`.
pub fn envelope(record: &str, name: &str, processed_ms: i64) -> Result<String, DebeziumError> {
    let r: Native<'_> =
        serde_json::from_str(record).map_err(|e| DebeziumError::NotARecord(e.to_string()))?;
    let (op, before, after) = match r.kind.as_str() {
        "insert" => ("c", None, r.data),
        "update" => ("u", r.old, r.data),
        "delete" => ("d", r.old.or(r.data), None),
        "truncate" => ("t", None, None),
        "read" => ("r", None, r.data),
        other => return Err(DebeziumError::UnknownKind(other.to_string())),
    };
    let parse = |l: &Option<String>| l.as_deref().and_then(|s| s.parse::<Lsn>().ok());
    let lsn = parse(&r.lsn).or_else(|| parse(&r.commit_lsn));
    let sequence = match lsn {
        Some(l) => format!("[null,\"{}\"]", l.0),
        None => "[null,null]".to_string(),
    };
    let envelope = Envelope {
        before,
        after,
        source: Source {
            version: VERSION,
            connector: "postgresql",
            name,
            ts_ms: r
                .timestamp
                .as_deref()
                .and_then(crate::metrics::parse_pg_timestamp_ms),
            snapshot: if r.kind == "read" {
                "incremental"
            } else {
                "false"
            },
            db: r.database.as_deref(),
            sequence,
            schema: r.schema.as_deref(),
            table: r.table.as_deref(),
            tx_id: r.xid,
            lsn: lsn.map(|l| l.0),
        },
        op,
        ts_ms: processed_ms,
    };
    serde_json::to_string(&envelope).map_err(|e| DebeziumError::NotARecord(e.to_string()))
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
            "sequence": "[null,\"22061688\"]",
            "schema": "public",
            "table": "orders",
            "txId": 725,
            "lsn": 22_061_688,
        })
    }

    fn check(kind: &str, rest: &str, op: &str, before: Value, after: Value, snapshot: &str) {
        let got = envelope(&native(kind, rest), "orders_slot", 42).unwrap();
        let got: Value = serde_json::from_str(&got).unwrap();
        let expect = json!({"before": before, "after": after, "source": source(snapshot), "op": op, "ts_ms": 42});
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
            r#"{{"before":null,"after":{{"n":12345678901234567890.0123456789,"m":21.00}},"source":{{"version":"{VERSION}","connector":"postgresql","name":"s","ts_ms":1795476555677,"snapshot":"false","db":"shop","sequence":"[null,\"22061688\"]","schema":"public","table":"orders","txId":725,"lsn":22061688}},"op":"c","ts_ms":7}}"#
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
        let col = |name: &str, raw: &str| Column {
            name: name.into(),
            value: RawValue::from_string(raw.into()).unwrap(),
        };
        let change = |kind, columns, identity| Change {
            kind,
            schema: "public".into(),
            table: "orders".into(),
            columns,
            identity,
            pk: vec!["id".into()],
            lsn: Some(Lsn(0x10)),
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
