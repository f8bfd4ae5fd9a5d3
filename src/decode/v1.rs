//! wal2json format-version 1: one JSON document per transaction,
//! `{"xid":..,"nextlsn":..,"timestamp":..,"change":[...]}`.
//!
//! Owns both shapes the server sends: the whole document in one message, and
//! `write-in-chunks`, where (as captured from wal2json 2.5) the document is split
//! at change boundaries: a header chunk `{"xid":..,"change":[`, one chunk per
//! change (`{..}`, later ones prefixed by `,`), and a closing `]}` chunk sent at
//! the commit. Because every chunk but the header and the close is a complete
//! JSON object, chunks are decoded one by one and memory stays bounded by one
//! row. It never assembles a transaction and never panics on input.
//!
//! Input is parsed as bytes, not checked as UTF-8 up front: a logical message's
//! `content` is whatever bytes the application emitted, and it is read lossily
//! (row values and names are still checked, as JSON text). wal2json 2.5 also writes
//! a non-transactional message that follows a transaction of two or more changes as
//! `{"change":[,{...}]}` (its change counter is reset only at BEGIN); that stray
//! comma is accepted there and nowhere else (`testdata/v1_messages.jsonl`).

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{
    json_error, lsn_field, shape_error, zip_columns, Change, Decode, DecodeError, Event, Kind,
    LossyText,
};
use crate::lsn::Lsn;

/// A whole document, or (with `change` ignored) a chunked header.
#[derive(Deserialize)]
struct Document<'a, C> {
    xid: Option<u64>,
    #[serde(borrow)]
    nextlsn: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    change: C,
}

/// One element of `change`. `kind` is `insert`/`update`/`delete`/`message`
/// (and `truncate`, which wal2json 2.5 does not emit in v1 but has a shape for).
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    schema: Option<Cow<'a, str>>,
    #[serde(borrow)]
    table: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    columnnames: Vec<Cow<'a, str>>,
    #[serde(borrow, default)]
    columnvalues: Vec<&'a RawValue>,
    /// Absent when the user turned `include-types` off.
    #[serde(borrow)]
    columntypes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow)]
    oldkeys: Option<OldKeys<'a>>,
    #[serde(borrow)]
    pk: Option<Pk<'a>>,
    transactional: Option<bool>,
    /// Not validated as UTF-8: a prefix is not ours to check, nor is an
    /// application's `content` (read lossily: only our signals' content is used).
    prefix: Option<LossyText>,
    content: Option<LossyText>,
}

#[derive(Deserialize)]
struct OldKeys<'a> {
    #[serde(borrow)]
    keynames: Vec<Cow<'a, str>>,
    #[serde(borrow)]
    keyvalues: Vec<&'a RawValue>,
    #[serde(borrow)]
    keytypes: Option<Vec<Cow<'a, str>>>,
}

#[derive(Deserialize)]
struct Pk<'a> {
    #[serde(borrow)]
    pknames: Vec<Cow<'a, str>>,
}

/// Decoder state for one format-version 1 stream.
#[derive(Debug, Default)]
pub(super) struct V1Decoder {
    /// Between a header chunk and its closing `]}`.
    in_chunked_txn: bool,
    /// The fast path's primary keys of the tables seen.
    headers: super::fast::Headers,
}

impl Decode for V1Decoder {
    fn feed(
        &mut self,
        wal_start: Lsn,
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let before = out.len();
        let result = self.feed_inner(wal_start, data, out);
        if result.is_err() {
            // A half-decoded document must not leak events before its error.
            out.truncate(before);
        }
        result
    }
}

impl V1Decoder {
    fn feed_inner(
        &mut self,
        wal_start: Lsn,
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let body = trim_json_space(data);
        if self.in_chunked_txn {
            if is_close_chunk(body) {
                self.in_chunked_txn = false;
                out.push(Event::Commit { end_lsn: wal_start });
                return Ok(());
            }
            let item_text = body.strip_prefix(b",").unwrap_or(body);
            // A row change, the bulk of the stream, in one pass; the rest through serde.
            if let Some(change) = super::fast::chunk::row(item_text, &mut self.headers) {
                out.push(Event::Change(change));
                return Ok(());
            }
            Self::item_chunk(wal_start, item_text, data, out)
        } else {
            self.feed_document(wal_start, body, data, out)
        }
    }

    /// One change chunk through serde (`item_text` without its leading `,`).
    fn item_chunk(
        wal_start: Lsn,
        item_text: &[u8],
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        let item: Item<'_> =
            serde_json::from_slice(item_text).map_err(|e| json_error(wal_start, data, e))?;
        if item.kind == "message" && item.transactional != Some(true) {
            // Non-transactional messages are written when read from WAL, never
            // while a transaction is replayed; one here means a lost close chunk.
            return Err(shape_error(
                wal_start,
                data,
                "non-transactional message inside a chunked transaction",
            ));
        }
        push_item(item, wal_start, data, out)
    }

    /// A change chunk through serde only, as the fast path's tests compare with.
    #[cfg(test)]
    pub(super) fn item_slow(
        wal_start: Lsn,
        item_text: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        Self::item_chunk(wal_start, item_text, item_text, out)
    }

    /// A whole document, or a chunked transaction's header, outside a transaction.
    fn feed_document(
        &mut self,
        wal_start: Lsn,
        body: &[u8],
        data: &[u8],
        out: &mut Vec<Event>,
    ) -> Result<(), DecodeError> {
        if body.ends_with(b"[") {
            // Header chunk: close it to make a parseable document. Once per transaction.
            let closed = [body, b"]}"].concat();
            let doc: Document<'_, IgnoredAny> =
                serde_json::from_slice(&closed).map_err(|e| json_error(wal_start, data, e))?;
            push_begin(&doc, wal_start, data, out)?;
            self.in_chunked_txn = true;
            return Ok(());
        }
        let (body, stray_comma) = without_stray_comma(body);
        let doc: Document<'_, Vec<Item<'_>>> =
            serde_json::from_slice(&body).map_err(|e| json_error(wal_start, data, e))?;
        let non_transactional = !doc.change.is_empty()
            && doc
                .change
                .iter()
                .all(|i| i.kind == "message" && i.transactional == Some(false));
        if non_transactional {
            // `{"change":[{"kind":"message","transactional":false,..}]}`: no transaction.
            return doc
                .change
                .into_iter()
                .try_for_each(|i| push_item(i, wal_start, data, out));
        }
        if stray_comma {
            return Err(shape_error(
                wal_start,
                data,
                "a `,` before the first change of a transaction",
            ));
        }
        push_begin(&doc, wal_start, data, out)?;
        // Without write-in-chunks the walsender labels the whole document with the
        // transaction's *first* LSN; `nextlsn` (the end of the commit record) is the
        // position that covers it. Confirming the lower one would only resend it.
        let end_lsn = match out.last() {
            Some(Event::Begin {
                txn_lsn: Some(next),
                ..
            }) => wal_start.max(*next),
            _ => wal_start,
        };
        for item in doc.change {
            push_item(item, wal_start, data, out)?;
        }
        out.push(Event::Commit { end_lsn });
        Ok(())
    }
}

fn push_begin<C>(
    doc: &Document<'_, C>,
    wal_start: Lsn,
    data: &[u8],
    out: &mut Vec<Event>,
) -> Result<(), DecodeError> {
    // `nextlsn` is the end of the commit record: fixed for the transaction, so
    // the same on every redelivery, and equal to the Commit's end_lsn.
    let txn_lsn = lsn_field(doc.nextlsn.as_deref(), "nextlsn", wal_start, data)?;
    out.push(Event::Begin {
        xid: doc.xid,
        timestamp: doc.timestamp.as_ref().map(|t| t.clone().into_owned()),
        txn_lsn,
    });
    Ok(())
}

fn push_item(
    item: Item<'_>,
    wal_start: Lsn,
    data: &[u8],
    out: &mut Vec<Event>,
) -> Result<(), DecodeError> {
    let kind = match item.kind.as_ref() {
        "insert" => Kind::Insert,
        "update" => Kind::Update,
        "delete" => Kind::Delete,
        "truncate" => Kind::Truncate,
        "message" => {
            let prefix = item.prefix.ok_or_else(|| shape_error(wal_start, data, "message without \"prefix\""))?;
            // v1 prints no position for a message; the message that carried it is
            // the closest position that is safe to report.
            out.push(Event::Message {
                prefix: prefix.0,
                content: item.content.map(|c| c.0).unwrap_or_default(),
                transactional: item.transactional.unwrap_or(false),
                lsn: wal_start,
            });
            return Ok(());
        }
        other => {
            return Err(shape_error(
                wal_start,
                data,
                format!("unknown change kind {other:?} (expected insert, update, delete, truncate or message)"),
            ))
        }
    };
    let table = item
        .table
        .ok_or_else(|| shape_error(wal_start, data, "change without \"table\""))?;
    let columns = zip_columns(
        item.columnnames,
        item.columnvalues,
        item.columntypes,
        "columnnames/columnvalues",
        wal_start,
        data,
    )?;
    let identity = match item.oldkeys {
        Some(k) => zip_columns(
            k.keynames,
            k.keyvalues,
            k.keytypes,
            "oldkeys",
            wal_start,
            data,
        )?,
        None => Vec::new(),
    };
    out.push(Event::Change(Change {
        kind,
        // Absent only when the user turned include-schemas off.
        schema: item.schema.map(super::Name::from).unwrap_or_default(),
        table: super::Name::from(table),
        columns,
        identity,
        pk: item
            .pk
            .map(|p| p.pknames.into_iter().map(Cow::into_owned).collect())
            .unwrap_or_default(),
        lsn: None,
        columns_tag: 0,
    }));
    Ok(())
}

/// JSON's insignificant whitespace (what `pretty-print` adds around chunks).
fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn trim_json_space(mut data: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = data {
        if !is_json_space(*first) {
            break;
        }
        data = rest;
    }
    while let [rest @ .., last] = data {
        if !is_json_space(*last) {
            break;
        }
        data = rest;
    }
    data
}

/// `]}` with optional whitespace between, as pretty-print writes `\t]\n}`.
fn is_close_chunk(body: &[u8]) -> bool {
    body.strip_prefix(b"]")
        .map(|rest| trim_json_space(rest) == b"}")
        .unwrap_or(false)
}

/// wal2json 2.5's `{"change":[,{...}]}` (whitespace allowed as pretty-print writes
/// it) without the comma, and whether there was one. Only a document whose first key
/// is `change` can have it: that is how wal2json opens a non-transactional message.
fn without_stray_comma(body: &[u8]) -> (Cow<'_, [u8]>, bool) {
    let comma_at = (|| {
        let rest = trim_json_space(body.strip_prefix(b"{")?);
        let rest = trim_json_space(rest.strip_prefix(b"\"change\"")?);
        let rest = trim_json_space(rest.strip_prefix(b":")?);
        let rest = trim_json_space(rest.strip_prefix(b"[")?);
        rest.starts_with(b",").then(|| body.len() - rest.len())
    })();
    match comma_at {
        Some(at) => {
            let mut fixed = body.to_vec();
            fixed[at] = b' ';
            (Cow::Owned(fixed), true)
        }
        None => (Cow::Borrowed(body), false),
    }
}

#[cfg(test)]
mod tests;
