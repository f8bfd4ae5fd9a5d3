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
            return push_item(item, wal_start, data, out);
        }
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
        schema: item.schema.map(Cow::into_owned).unwrap_or_default(),
        table: table.into_owned(),
        columns,
        identity,
        pk: item
            .pk
            .map(|p| p.pknames.into_iter().map(Cow::into_owned).collect())
            .unwrap_or_default(),
        lsn: None,
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
mod tests {
    use super::*;
    use crate::decode::tests::{decode_fixture, find_change, summary, value_of};

    fn lsn(s: &str) -> Lsn {
        s.parse().unwrap()
    }

    /// The same transactions must come out of all three v1 fixtures.
    fn check_v1_events(events: &[Event]) {
        let Event::Begin {
            xid,
            timestamp,
            txn_lsn,
        } = &events[0]
        else {
            panic!("{:?}", events[0])
        };
        assert_eq!(*xid, Some(729));
        assert_eq!(timestamp.as_deref(), Some("2026-11-23 23:19:47.790774+00"));
        assert_eq!(*txn_lsn, Some(lsn("0/153C0F8")));
        assert!(
            matches!(events[3], Event::Commit { end_lsn } if end_lsn == lsn("0/153C0F8")),
            "{:?}",
            events[3]
        );

        let ins = find_change(events, Kind::Insert, "t_all", 0);
        assert_eq!(ins.schema, "public");
        assert_eq!(ins.lsn, None);
        assert_eq!(ins.pk, ["id"]);
        assert_eq!(
            value_of(&ins.columns, "num"),
            "123456789012345678901.1234567890"
        );
        assert_eq!(
            value_of(&ins.columns, "txt"),
            r#""héllo \"wörld\" \\ back\nnew line\ttab 😀 ☃""#
        );
        assert_eq!(
            value_of(&ins.columns, "tarr"),
            r#""{\"a b\",\"c\\\"d\",NULL}""#
        );
        assert_eq!(
            value_of(&ins.columns, "ts"),
            r#""2024-02-29 12:34:56.789012+00""#
        );
        assert_eq!(
            value_of(
                &find_change(events, Kind::Insert, "t_all", 1).columns,
                "doc"
            ),
            "null"
        );

        let upd = find_change(events, Kind::Update, "t_all", 1);
        assert_eq!(value_of(&upd.identity, "id"), "2");
        assert_eq!(value_of(&upd.columns, "id"), "3");
        let del = find_change(events, Kind::Delete, "t_full", 0);
        assert!(del.columns.is_empty());
        assert_eq!(value_of(&del.identity, "id"), "1");
        assert_eq!(value_of(&del.identity, "v"), r#""full uno""#);
        let weird = find_change(events, Kind::Delete, "Weird \"Name\"", 0);
        assert_eq!(weird.pk, ["k1", "k2"]);
        assert_eq!(value_of(&weird.identity, "k2"), r#""k""#);

        // The non-transactional message is not wrapped in Begin/Commit.
        let i = events
            .iter()
            .position(|e| {
                matches!(
                    e,
                    Event::Message {
                        transactional: false,
                        ..
                    }
                )
            })
            .expect("non-transactional message");
        assert!(
            matches!(&events[i], Event::Message { prefix, lsn: l, .. } if prefix == "my-prefix" && *l == lsn("0/153C8B8"))
        );
        assert!(matches!(events[i - 1], Event::Commit { end_lsn } if end_lsn == lsn("0/153C860")));
        assert!(matches!(events[i + 1], Event::Begin { xid: Some(740), .. }));
        assert!(events
            .iter()
            .any(|e| matches!(e, Event::Message { prefix, transactional: true, .. } if prefix == "txn-prefix")));

        // wal2json 2.5 drops TRUNCATE in v1: the last transaction is empty.
        assert!(!events
            .iter()
            .any(|e| matches!(e, Event::Change(c) if c.kind == Kind::Truncate)));
        let n = events.len();
        assert!(matches!(events[n - 2], Event::Begin { xid: Some(741), .. }));
        assert!(matches!(events[n - 1], Event::Commit { end_lsn } if end_lsn == lsn("0/153DF88")));
        let commits = events
            .iter()
            .filter(|e| matches!(e, Event::Commit { .. }))
            .count();
        assert_eq!(commits, 13);
    }

    #[test]
    fn decodes_real_whole_documents() {
        check_v1_events(&decode_fixture(
            Box::new(V1Decoder::default()),
            include_str!("testdata/v1.jsonl"),
        ));
    }

    #[test]
    fn decodes_real_chunks() {
        check_v1_events(&decode_fixture(
            Box::new(V1Decoder::default()),
            include_str!("testdata/v1_chunks.jsonl"),
        ));
    }

    #[test]
    fn decodes_real_pretty_printed_chunks() {
        let fixture = include_str!("testdata/v1_chunks_pretty.jsonl");
        check_v1_events(&decode_fixture(Box::new(V1Decoder::default()), fixture));
    }

    #[test]
    fn decodes_truncate_shape_and_rejects_mismatched_lists() {
        let mut d = V1Decoder::default();
        let mut out = Vec::new();
        let doc = br#"{"xid":1,"change":[{"kind":"truncate","schema":"s","table":"t"}]}"#;
        d.feed(lsn("0/10"), doc, &mut out).unwrap();
        assert!(matches!(&out[1], Event::Change(c) if c.kind == Kind::Truncate && c.table == "t"));
        assert_eq!(out.len(), 3);

        out.clear();
        let bad = br#"{"xid":2,"change":[{"kind":"insert","table":"t"},{"kind":"insert","table":"t","columnnames":["a","b"],"columnvalues":[1]}]}"#;
        let err = d.feed(lsn("0/20"), bad, &mut out).unwrap_err().to_string();
        assert!(
            err.contains("0/20") && err.contains("2 names but 1 values"),
            "{err}"
        );
        assert!(out.is_empty(), "no events may leak from a failed document");
    }

    #[test]
    fn chunk_state_is_enforced() {
        let mut d = V1Decoder::default();
        let mut out = Vec::new();
        d.feed(
            lsn("0/1"),
            br#"{"xid":5,"nextlsn":"0/9","change":["#,
            &mut out,
        )
        .unwrap();
        let err = d
            .feed(lsn("0/2"), br#",{"kind":"upsert","table":"t"}"#, &mut out)
            .unwrap_err();
        assert!(err.to_string().contains("upsert"), "{err}");
        let nontxn = br#"{"kind":"message","transactional":false,"prefix":"p","content":""}"#;
        assert!(d.feed(lsn("0/3"), nontxn, &mut out).is_err());
        d.feed(lsn("0/9"), b" ]\n} ", &mut out).unwrap();
        assert!(matches!(out.last(), Some(Event::Commit { end_lsn }) if *end_lsn == lsn("0/9")));
        // After the close, a stray close is not a document.
        assert!(d.feed(lsn("0/A"), b"]}", &mut out).is_err());
    }

    /// wal2json 2.5's own output (`testdata/messages.sql`): non-transactional
    /// messages after a two-change transaction carry a stray `,`, and message
    /// content is not UTF-8. Every row and commit still comes out, in order.
    #[test]
    fn accepts_wal2json_stray_comma_and_binary_message_content() {
        let expected = [
            "B 725",
            "insert t 1",
            "insert t 2",
            "C 0/1525F00",
            "M pg-cdc-to-kinesis-heartbeat false 0/1525F68",
            "M app-prefix false 0/1525FB8",
            "M app-binary false 0/1526000",
            "B 726",
            "insert t 3",
            "M app-binary-txn true LSN",
            "insert t 4",
            "C 0/1526198",
            "B 727",
            "insert t 5",
            "C 0/1526248",
            "M pg-cdc-to-kinesis-heartbeat false 0/15262B0",
            "B 728",
            "C 0/152C940",
        ];
        for (fixture, txn_message_lsn) in [
            // A whole document carries one position; a chunk its own.
            (include_str!("testdata/v1_messages.jsonl"), "0/1526198"),
            (
                include_str!("testdata/v1_chunks_messages.jsonl"),
                "0/15260E8",
            ),
            (
                include_str!("testdata/v1_chunks_pretty_messages.jsonl"),
                "0/15260E8",
            ),
        ] {
            let events = summary(&decode_fixture(Box::new(V1Decoder::default()), fixture));
            let expected: Vec<String> = expected
                .iter()
                .map(|e| e.replace("LSN", txn_message_lsn))
                .collect();
            assert_eq!(events, expected);
        }
    }

    #[test]
    fn stray_comma_is_accepted_only_before_a_non_transactional_message() {
        let mut d = V1Decoder::default();
        let mut out = Vec::new();
        let txn = br#"{"change":[,{"kind":"insert","table":"t","columnnames":["id"],"columnvalues":[1]}]}"#;
        let err = d.feed(lsn("0/10"), txn, &mut out).unwrap_err().to_string();
        assert!(
            err.contains("0/10") && err.contains("`,` before the first change"),
            "{err}"
        );
        let with_xid =
            br#"{"xid":1,"change":[,{"kind":"message","transactional":false,"prefix":"p"}]}"#;
        assert!(d.feed(lsn("0/20"), with_xid, &mut out).is_err());
        let double = br#"{"change":[,,{"kind":"message","transactional":false,"prefix":"p"}]}"#;
        assert!(d.feed(lsn("0/30"), double, &mut out).is_err());
        assert!(out.is_empty(), "{:?}", summary(&out));
        // A row value must still be valid text; only message content is skipped.
        let bad_row = b"{\"xid\":2,\"change\":[{\"kind\":\"insert\",\"table\":\"t\",\"columnnames\":[\"id\"],\"columnvalues\":[\"\xff\"]}]}";
        assert!(d.feed(lsn("0/40"), bad_row, &mut out).is_err());
    }
}
