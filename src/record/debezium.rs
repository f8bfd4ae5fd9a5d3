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
    // Sized for the whole envelope (see `native::columns_len`).
    let size = 640
        + change.schema.len()
        + change.table.len()
        + super::native::columns_len(&change.columns)
        + super::native::columns_len(&change.identity);
    let mut out = Vec::with_capacity(size);
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
mod tests;
