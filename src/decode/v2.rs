//! wal2json format-version 2: one JSON document per message.
//!
//! Owns the mapping of the `action` records (`B` begin, `C` commit, `I`/`U`/`D`
//! rows, `T` one truncated table, `M` logical message) onto [`Event`]s. It never
//! buffers across messages beyond one "inside a transaction" flag, never panics on
//! input, and never rewrites a column value.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    json_error, lsn_field, shape_error, Change, Column, ColumnType, Decode, DecodeError, Event,
    Kind, LossyText,
};
use crate::lsn::Lsn;

/// One v2 message. Every field but `action` depends on the action and on the
/// user's options, hence the `Option`s; unknown fields (`typeoid`,
/// `origin`, ...) are skipped without allocating.
#[derive(Deserialize)]
struct Record<'a> {
    #[serde(borrow)]
    action: Cow<'a, str>,
    xid: Option<u64>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    lsn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    nextlsn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow)]
    columns: Option<Vec<ValueColumn<'a>>>,
    #[serde(borrow)]
    identity: Option<Vec<ValueColumn<'a>>>,
    #[serde(borrow)]
    pk: Option<Vec<PkColumn<'a>>>,
    transactional: Option<bool>,
    /// Not validated as UTF-8: a message's prefix is not ours to check, nor is its
    /// `content`, any bytes the application emitted (read lossily: only our
    /// signals' content is used).
    prefix: Option<LossyText>,
    content: Option<LossyText>,
}

#[derive(Deserialize)]
struct ValueColumn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
    // Not `Option`: serde would turn a JSON `null` into `None` and lose it.
    #[serde(borrow)]
    value: &'a RawValue,
    /// Absent when the user turned `include-types` off.
    #[serde(borrow, rename = "type")]
    ty: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct PkColumn<'a> {
    #[serde(borrow)]
    name: Cow<'a, str>,
}

/// Decoder state for one format-version 2 stream.
#[derive(Debug, Default)]
pub(super) struct V2Decoder {
    in_txn: bool,
    /// The fast path's column headers of the tables seen.
    headers: super::fast::Headers,
}

impl Decode for V2Decoder {
    fn feed(
        &mut self,
        wal_start: Lsn,
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        // Rows, the bulk of the stream, in one pass; the rest, and anything the fast
        // path does not fully understand, through serde.
        if self.in_txn {
            if let Some(change) = super::fast::row(data, &mut self.headers) {
                out.push(Event::Change(change));
                return Ok(());
            }
        }
        self.feed_slow(wal_start, data, out)
    }
}

impl V2Decoder {
    /// A decoder inside a transaction (tests feed it rows directly).
    #[cfg(test)]
    pub(super) fn in_transaction() -> Self {
        V2Decoder {
            in_txn: true,
            ..Self::default()
        }
    }

    /// Decode any v2 document with serde, or say what is wrong with it.
    pub(super) fn feed_slow(
        &mut self,
        wal_start: Lsn,
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let rec: Record<'_> =
            serde_json::from_slice(data).map_err(|e| json_error(wal_start, data, e))?;
        let shape = |what: String| shape_error(wal_start, data, what);
        match rec.action.as_ref() {
            "B" => {
                if self.in_txn {
                    return Err(shape(
                        "a transaction began before the previous one committed".into(),
                    ));
                }
                // `nextlsn` (end of the commit record) rather than `lsn` (its start)
                // so txn_lsn equals the Commit's end_lsn; both are fixed properties of
                // the commit record, so they are the same on every redelivery.
                let txn_lsn = lsn_field(rec.nextlsn.as_deref(), "nextlsn", wal_start, data)?;
                out.push(Event::Begin {
                    xid: rec.xid,
                    timestamp: rec.timestamp.map(Cow::into_owned),
                    txn_lsn,
                });
                self.in_txn = true;
            }
            "C" => {
                if !self.in_txn {
                    return Err(shape("a commit arrived outside a transaction".into()));
                }
                self.in_txn = false;
                out.push(Event::Commit { end_lsn: wal_start });
            }
            "M" => {
                let prefix = rec
                    .prefix
                    .ok_or_else(|| shape("message without \"prefix\"".into()))?;
                out.push(Event::Message {
                    prefix: prefix.0,
                    content: rec.content.map(|c| c.0).unwrap_or_default(),
                    transactional: rec.transactional.unwrap_or(false),
                    lsn: wal_start,
                });
            }
            action => {
                let kind = match action {
                    "I" => Kind::Insert,
                    "U" => Kind::Update,
                    "D" => Kind::Delete,
                    "T" => Kind::Truncate,
                    other => {
                        return Err(shape(format!(
                            "unknown action {other:?} (expected B, C, I, U, D, T or M)"
                        )))
                    }
                };
                if !self.in_txn {
                    return Err(shape(format!(
                        "row change {action:?} outside a transaction; wal2json option include-transaction must be true"
                    )));
                }
                let table = rec
                    .table
                    .ok_or_else(|| shape("row change without \"table\"".into()))?;
                let lsn = lsn_field(rec.lsn.as_deref(), "lsn", wal_start, data)?;
                out.push(Event::Change(Change {
                    kind,
                    // Absent only when the user turned include-schemas off.
                    schema: rec.schema.map(super::Name::from).unwrap_or_default(),
                    table: super::Name::from(table),
                    columns: owned_columns(rec.columns),
                    identity: owned_columns(rec.identity),
                    pk: rec
                        .pk
                        .unwrap_or_default()
                        .into_iter()
                        .map(|c| c.name.into_owned())
                        .collect(),
                    lsn,
                    columns_tag: 0,
                }));
            }
        }
        Ok(())
    }
}

fn owned_columns(cols: Option<Vec<ValueColumn<'_>>>) -> Vec<Column> {
    cols.unwrap_or_default()
        .into_iter()
        .map(|c| Column {
            name: super::Name::from(c.name),
            value: super::Json::from_raw(c.value),
            ty: c.ty.as_deref().map_or(ColumnType::Other, ColumnType::of),
        })
        .collect()
}

#[cfg(test)]
mod tests;
