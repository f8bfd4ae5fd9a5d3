//! Unit tests of the format-version 1 decoder, on real wal2json fixtures.

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
    assert_eq!(ins.pk[..], ["id"]);
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
    assert_eq!(weird.pk[..], ["k1", "k2"]);
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
        include_str!("../testdata/v1.jsonl"),
    ));
}

#[test]
fn decodes_real_chunks() {
    check_v1_events(&decode_fixture(
        Box::new(V1Decoder::default()),
        include_str!("../testdata/v1_chunks.jsonl"),
    ));
}

#[test]
fn decodes_real_pretty_printed_chunks() {
    let fixture = include_str!("../testdata/v1_chunks_pretty.jsonl");
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
        (include_str!("../testdata/v1_messages.jsonl"), "0/1526198"),
        (
            include_str!("../testdata/v1_chunks_messages.jsonl"),
            "0/15260E8",
        ),
        (
            include_str!("../testdata/v1_chunks_pretty_messages.jsonl"),
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
    let txn =
        br#"{"change":[,{"kind":"insert","table":"t","columnnames":["id"],"columnvalues":[1]}]}"#;
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
