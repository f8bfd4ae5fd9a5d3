//! Unit tests of the format-version 2 decoder, on real wal2json fixtures.

use super::*;
use crate::decode::tests::{decode_fixture, find_change, summary, value_of};

fn lsn(s: &str) -> Lsn {
    s.parse().unwrap()
}

#[test]
fn decodes_real_v2_fixture() {
    let events = decode_fixture(
        Box::new(V2Decoder::default()),
        include_str!("../testdata/v2.jsonl"),
    );

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

    let ins = find_change(&events, Kind::Insert, "t_all", 0);
    assert_eq!(ins.schema, "public");
    assert_eq!(ins.lsn, Some(lsn("0/153BE58")));
    assert_eq!(ins.pk[..], ["id"]);
    assert_eq!(
        value_of(&ins.columns, "num"),
        "123456789012345678901.1234567890"
    );
    assert_eq!(value_of(&ins.columns, "big"), "9223372036854775807");
    assert_eq!(
        value_of(&ins.columns, "txt"),
        r#""héllo \"wörld\" \\ back\nnew line\ttab 😀 ☃""#
    );
    assert_eq!(
        value_of(&ins.columns, "doc"),
        r#""{\"a\": [1, 2.50, null], \"b\": \"x\\\"y\"}""#
    );
    assert_eq!(value_of(&ins.columns, "bin"), r#""deadbeef00""#);
    assert_eq!(value_of(&ins.columns, "flag"), "true");
    assert_eq!(value_of(&ins.columns, "arr"), r#""{1,2,NULL}""#);
    assert!(ins.identity.is_empty());
    let nulls = find_change(&events, Kind::Insert, "t_all", 1);
    assert_eq!(value_of(&nulls.columns, "num"), "null");
    // The first transaction ends at the end of its commit record.
    assert!(matches!(events[3], Event::Commit { end_lsn } if end_lsn == lsn("0/153C0F8")));

    let upd = find_change(&events, Kind::Update, "t_all", 0);
    assert_eq!(value_of(&upd.columns, "num"), "-0.0000000001");
    assert_eq!(value_of(&upd.identity, "id"), "1");
    let pk_change = find_change(&events, Kind::Update, "t_all", 1);
    assert_eq!(value_of(&pk_change.identity, "id"), "2");
    assert_eq!(value_of(&pk_change.columns, "id"), "3");

    let full = find_change(&events, Kind::Update, "t_full", 0);
    assert_eq!(value_of(&full.identity, "v"), r#""full one""#);
    let del = find_change(&events, Kind::Delete, "t_full", 0);
    assert!(del.columns.is_empty());
    assert_eq!(value_of(&del.identity, "v"), r#""full uno""#);
    let weird = find_change(&events, Kind::Delete, "Weird \"Name\"", 0);
    assert_eq!(weird.pk[..], ["k1", "k2"]);
    assert_eq!(value_of(&weird.identity, "k2"), r#""k""#);
    assert!(find_change(&events, Kind::Insert, "t_nopk", 0)
        .pk
        .is_empty());

    let truncs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Change(c) if c.kind == Kind::Truncate => Some(c.table.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(truncs, ["t_nopk", "t_full"]);

    let messages: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message {
                prefix,
                transactional,
                lsn,
                ..
            } => Some((prefix.as_str(), *transactional, *lsn)),
            _ => None,
        })
        .collect();
    assert_eq!(
        messages,
        [
            ("my-prefix", false, lsn("0/153C8B8")),
            ("txn-prefix", true, lsn("0/153C960"))
        ]
    );

    let commits: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Commit { end_lsn } => Some(end_lsn.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(commits.len(), 13);
    assert_eq!(commits.last().map(String::as_str), Some("0/153DF88"));
}

#[test]
fn decodes_without_optional_fields() {
    let events = decode_fixture(
        Box::new(V2Decoder::default()),
        include_str!("../testdata/v2_bare.jsonl"),
    );
    assert!(matches!(
        events[0],
        Event::Begin {
            xid: None,
            timestamp: None,
            txn_lsn: None
        }
    ));
    let ins = find_change(&events, Kind::Insert, "t_all", 0);
    assert_eq!(ins.lsn, None);
    assert!(ins.pk.is_empty());
    assert_eq!(
        value_of(&ins.columns, "num"),
        "123456789012345678901.1234567890"
    );
    assert!(matches!(events[3], Event::Commit { end_lsn } if end_lsn == lsn("0/153C0F8")));
}

/// Two overlapping transactions (the later-started one committed first):
/// commits arrive in commit order with rising end_lsn, but the second
/// transaction's changes lie *before* the first one's commit. Only Commit
/// end_lsn may be confirmed.
#[test]
fn interleaved_transactions_only_commit_lsns_rise() {
    let events = decode_fixture(
        Box::new(V2Decoder::default()),
        include_str!("../testdata/v2_interleaved.jsonl"),
    );
    let commits: Vec<Lsn> = events
        .iter()
        .filter_map(|e| match e {
            Event::Commit { end_lsn } => Some(*end_lsn),
            _ => None,
        })
        .collect();
    assert_eq!(commits, [lsn("0/1582698"), lsn("0/1582748")]);
    let a1 = find_change(&events, Kind::Insert, "t_full", 1);
    assert_eq!(value_of(&a1.columns, "v"), r#""A1""#);
    assert!(a1.lsn.unwrap() < commits[0], "{:?}", a1.lsn);
    assert!(
        matches!(events[3], Event::Begin { xid: Some(755), txn_lsn: Some(l), .. } if l == commits[1])
    );
}

#[test]
fn rejects_changes_outside_a_transaction_with_location() {
    let mut d = V2Decoder::default();
    let mut out = Vec::new();
    let err = d
        .feed(
            lsn("1/2"),
            br#"{"action":"I","table":"t","columns":[]}"#,
            &mut out,
        )
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("1/2") && msg.contains("include-transaction") && msg.contains("action"),
        "{msg}"
    );
    assert!(d.feed(lsn("1/3"), br#"{"action":"C"}"#, &mut out).is_err());
    assert!(d.feed(lsn("1/4"), br#"{"action":"X"}"#, &mut out).is_err());
    assert!(d
        .feed(lsn("1/5"), b"{\"action\":\"B\"", &mut out)
        .unwrap_err()
        .to_string()
        .contains("1/5"));
    assert!(out.is_empty());
}

/// Rough rows/s on the wide `t_all` row; `cargo test --release --lib
/// decode::v2::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput() {
    let fixture = include_str!("../testdata/v2.jsonl");
    let row = fixture.lines().nth(1).unwrap();
    let data = serde_json::from_str::<serde_json::Value>(row).unwrap()["data"]
        .as_str()
        .unwrap()
        .to_string();
    let mut d = V2Decoder::in_transaction();
    let mut out = Vec::with_capacity(1);
    let n = 200_000;
    let rate = |slow: bool, d: &mut V2Decoder, out: &mut Vec<Event>| {
        let start = std::time::Instant::now();
        for _ in 0..n {
            if slow {
                d.feed_slow(Lsn(1), data.as_bytes(), out).unwrap();
            } else {
                d.feed(Lsn(1), data.as_bytes(), out).unwrap();
            }
            out.clear();
        }
        f64::from(n) / start.elapsed().as_secs_f64()
    };
    let fast = rate(false, &mut d, &mut out);
    let slow = rate(true, &mut d, &mut out);
    println!(
        "{fast:.0} rows/s, serde path {slow:.0} rows/s ({} bytes/row)",
        data.len()
    );
}

/// `testdata/messages.sql` in format-version 2: message content that is not
/// UTF-8 is skipped unread, inside and outside a transaction.
#[test]
fn skips_binary_message_content() {
    let events = decode_fixture(
        Box::new(V2Decoder::default()),
        include_str!("../testdata/v2_messages.jsonl"),
    );
    assert_eq!(
        summary(&events),
        [
            "B 725",
            "insert t 1",
            "insert t 2",
            "C 0/1525F00",
            "M pg-cdc-to-kinesis-heartbeat false 0/1525F68",
            "M app-prefix false 0/1525FB8",
            "M app-binary false 0/1526000",
            "B 726",
            "insert t 3",
            "M app-binary-txn true 0/15260E8",
            "insert t 4",
            "C 0/1526198",
            "B 727",
            "insert t 5",
            "C 0/1526248",
            "M pg-cdc-to-kinesis-heartbeat false 0/15262B0",
            "B 728",
            "C 0/152C940",
        ]
    );
}
