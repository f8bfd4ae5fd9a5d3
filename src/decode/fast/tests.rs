//! Unit tests of the v2 row scanner: it answers as the serde path does, or not at all.

use std::cell::RefCell;
use std::sync::Arc;

use super::*;
use crate::decode::tests::fixture_lines;
use crate::decode::Event;
use proptest::prelude::*;

/// Where a fast path answered `fast` for `doc`, its change is what `slow` (the serde
/// path, writing into the events) makes of `doc`: the check both fast paths' tests use.
/// Its columns tag, which the serde path does not give, is held to its promise
/// instead: one tag, one table's column names and types in one order.
pub(super) fn assert_agrees(
    doc: &str,
    fast: Option<Change>,
    slow: impl FnOnce(&mut Vec<Event>) -> Result<(), crate::decode::DecodeError>,
) {
    let Some(mut change) = fast else {
        return;
    };
    let tag = std::mem::take(&mut change.columns_tag);
    if tag != 0 {
        let columns = format!(
            "{:?}",
            (
                &change.schema,
                &change.table,
                change
                    .columns
                    .iter()
                    .map(|c| (&c.name, c.ty))
                    .collect::<Vec<_>>()
            )
        );
        TAGS.with(|tags| {
            let mut tags = tags.borrow_mut();
            let first = tags.entry(tag).or_insert_with(|| columns.clone());
            assert_eq!(
                *first, columns,
                "tag {tag} given to two sets of columns, the second in {doc}"
            );
        });
    }
    let mut out = Vec::new();
    let serde = match slow(&mut out) {
        Ok(()) => format!("{out:?}"),
        Err(e) => format!("error: {e}"),
    };
    let fast = format!("{:?}", vec![Event::Change(change)]);
    assert_eq!(fast, serde, "fast path differs on {doc}");
}

thread_local! {
    /// The columns each tag was seen with, by the tests of this thread.
    static TAGS: RefCell<std::collections::HashMap<u64, String>> = RefCell::default();
}

fn fast(doc: &str) -> Option<Change> {
    row(doc.as_bytes(), &mut Headers::default())
}

/// Where the fast path answers, it answers what the serde path does (in a transaction).
fn agrees(doc: &str) {
    agrees_after(&RefCell::default(), doc);
}

/// [`agrees`] with the column headers `headers` holds from the rows read before.
fn agrees_after(headers: &RefCell<Headers>, doc: &str) {
    let fast = row(doc.as_bytes(), &mut headers.borrow_mut());
    assert_agrees(doc, fast, |out| {
        super::super::v2::V2Decoder::in_transaction().feed_slow(Lsn(7), doc.as_bytes(), out)
    });
}

#[test]
fn every_row_of_the_fixtures_decodes_as_the_serde_path_does() {
    let mut rows = 0;
    // One cache through all of them, as one decoder reads them: hits and misses.
    let headers = RefCell::default();
    for fixture in [
        include_str!("../testdata/v2.jsonl"),
        include_str!("../testdata/v2_bare.jsonl"),
        include_str!("../testdata/v2_interleaved.jsonl"),
        include_str!("../testdata/v2_messages.jsonl"),
    ] {
        for (_, data) in fixture_lines(fixture) {
            // Documents that are not UTF-8 (binary message content) never take it.
            let Ok(data) = std::str::from_utf8(&data) else {
                assert!(row(&data, &mut headers.borrow_mut()).is_none());
                continue;
            };
            agrees_after(&headers, data);
            rows += usize::from(fast(data).is_some());
        }
    }
    assert!(rows >= 10, "only {rows} fixture rows took the fast path");
}

#[test]
fn the_common_row_takes_the_fast_path() {
    let doc = r#"{"action":"U","xid":9,"lsn":"0/16B3748","schema":"public","table":"t","columns":[{"name":"id","type":"bigint","value":-1.5e+3},{"name":"n","type":"text","value":"a \"q\" \\ \n"},{"name":"j","type":"jsonb","value":null},{"name":"b","type":"boolean","value":true}],"identity":[{"name":"id","type":"bigint","value":0}],"pk":[{"name":"id","type":"bigint"}]}"#;
    let c = fast(doc).expect("fast path");
    assert_eq!(c.kind, Kind::Update);
    assert_eq!(c.columns[1].value.get(), r#""a \"q\" \\ \n""#);
    assert_eq!(c.columns[2].ty, ColumnType::Json);
    agrees(doc);
}

/// Keys are taken by their bytes where wal2json puts them, and read as strings
/// elsewhere: both ways give the same change, and a key twice is refused whichever
/// way each came.
#[test]
fn keys_anywhere_and_spaced_decode_as_in_wal2json_s_order() {
    let untagged = |doc: &str| {
        let mut c = fast(doc).unwrap_or_else(|| panic!("fast path refused {doc}"));
        c.columns_tag = 0;
        format!("{c:?}")
    };
    let ordered = r#"{"action":"U","xid":9,"lsn":"0/16B3748","schema":"s","table":"t","columns":[{"name":"a","type":"int","value":1}],"pk":[{"name":"a","type":"int"}]}"#;
    let want = untagged(ordered);
    for doc in [
        r#"{"table":"t","columns":[{"name":"a","type":"int","value":1}],"schema":"s","pk":[{"name":"a","type":"int"}],"lsn":"0/16B3748","xid":9,"action":"U"}"#,
        r#"{ "action" : "U", "xid":9 ,"lsn":"0/16B3748","schema":"s",  "table":"t","columns":[{"name":"a","type":"int","value":1}],"pk":[{"name":"a","type":"int"}] }"#,
        r#"{"action":"U","tables":"x","xid":9,"lsn":"0/16B3748","schema":"s","table":"t","columns":[{"name":"a","type":"int","value":1}],"pk":[{"name":"a","type":"int"}]}"#,
    ] {
        assert_eq!(untagged(doc), want, "{doc}");
        agrees(doc);
    }
    for doc in [
        r#"{"action":"I","table":"t", "table":"u","columns":[]}"#,
        r#"{"action":"I", "table":"t","table":"u","columns":[]}"#,
        r#"{"action":"I","columns":[],"table":"t","table":"u"}"#,
    ] {
        assert!(fast(doc).is_none(), "fast path took {doc}");
    }
}

#[test]
fn a_cached_header_stands_only_for_the_same_bytes() {
    let doc = |table: &str, ty: &str, value: &str| {
        format!(
            r#"{{"action":"I","schema":"s","table":"{table}","columns":[{{"name":"id","type":"int","value":1}},{{"name":"a","type":"{ty}","value":{value}}}]}}"#
        )
    };
    let headers = RefCell::new(Headers::default());
    let read = |d: &str| {
        agrees_after(&headers, d);
        row(d.as_bytes(), &mut headers.borrow_mut())
            .map(|c| (c.columns[1].ty, c.columns[1].value.clone()))
    };
    assert_eq!(
        read(&doc("t", "text", "\"x\"")),
        Some((ColumnType::Other, Json::scanned("\"x\"")))
    );
    assert_eq!(headers.borrow_mut().of("s", "t").columns.len(), 2);
    // The same name with another type: read again, and the cache follows.
    assert_eq!(
        read(&doc("t", "jsonb", "null")),
        Some((ColumnType::Json, Json::scanned("null")))
    );
    // Another table in between keeps its own headers.
    assert_eq!(
        read(&doc("u", "date", "\"2026-01-01\"")).map(|c| c.0),
        Some(ColumnType::Date)
    );
    assert_eq!(
        read(&doc("t", "jsonb", "[1]")),
        None,
        "a value the fast path does not take"
    );
    assert_eq!(
        read(&doc("t", "jsonb", "2")).map(|c| c.0),
        Some(ColumnType::Json)
    );
    assert_eq!(headers.borrow().0.len(), 2);
}

#[test]
fn the_header_cache_is_bounded_and_keeps_schemas_apart() {
    let headers = RefCell::new(Headers::default());
    let wide: Vec<String> = (0..MAX_COLUMNS + 6)
        .map(|i| format!(r#"{{"name":"c{i}","type":"int","value":{i}}}"#))
        .collect();
    let long = format!(
        r#"{{"name":"{}","type":"text","value":"x"}}"#,
        "n".repeat(MAX_HEADER)
    );
    for schema in ["a", "b"] {
        let doc = format!(
            r#"{{"action":"I","schema":"{schema}","table":"t","columns":[{},{long}]}}"#,
            wide.join(",")
        );
        agrees_after(&headers, &doc);
        agrees_after(&headers, &doc);
    }
    let mut headers = headers.borrow_mut();
    // Only the first MAX_COLUMNS columns, and not the long header past them.
    assert_eq!(headers.of("a", "t").columns.len(), MAX_COLUMNS);
    assert_eq!(headers.of("b", "t").columns.len(), MAX_COLUMNS);
    assert_eq!(headers.0.len(), 2, "a.t and b.t are two tables");
    for i in 0..MAX_TABLES + 1 {
        headers.of("s", &format!("t{i}"));
    }
    assert!(headers.0.len() <= MAX_TABLES);
}

#[test]
fn what_it_does_not_fully_understand_goes_to_the_serde_path() {
    for doc in [
        r#"{"action":"B","xid":1,"nextlsn":"0/2"}"#,
        r#"{"action":"T","schema":"s","table":"t"}"#,
        r#"{"action":"I","schema":"s","table":"t\"x","columns":[]}"#,
        r#"{"action":"I","table":"t","columns":[{"name":"a","value":"\u00e9"}]}"#,
        r#"{"action":"I","table":"t","columns":[{"name":"a","value":01}]}"#,
        r#"{"action":"I","table":"t","columns":[{"name":"a","value":1.}]}"#,
        r#"{"action":"I","table":"t","columns":[{"name":"a","value":[1]}]}"#,
        r#"{"action":"I","table":"t","table":"u"}"#,
        // Escapes in keys: serde reads `table` twice (and refuses the row), and a key
        // longer than a word with an escape.
        r#"{"action":"I","table":"t","t\u0061ble":"u","columns":[]}"#,
        r#"{"action":"I","table":"t","t\u0061ble"  :"u","columns":[]}"#,
        r#"{"action":"I","table":"t","a_key_longer_than_sixteen\n":1,"columns":[]}"#,
        r#"{"action":"I","table":"t","columns":[{"name":"a","value":1,"value":2}]}"#,
        r#"{"action":"I","table":"t"} x"#,
        r#"{"action":"I","table":"t","#,
        "{\"action\":\"I\",\"table\":\"t\",\"columns\":[{\"name\":\"a\",\"value\":\"\x01\"}]}",
    ] {
        assert!(fast(doc).is_none(), "fast path took {doc}");
    }
}

/// A JSON scalar as wal2json may print one.
pub(super) fn scalar() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        any::<i64>().prop_map(|n| n.to_string()),
        "-?(0|[1-9][0-9]{0,20})(\\.[0-9]{1,12})?([eE][+-]?[0-9]{1,3})?",
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap()),
    ]
}

proptest! {
    /// Generated rows, whole and cut or flipped: the fast path never answers
    /// differently from the serde path.
    #[test]
    fn agrees_with_the_serde_path_on_generated_and_mutated_rows(
        action in prop_oneof![Just("I"), Just("U"), Just("D"), Just("B")],
        cols in proptest::collection::vec(("[a-z_]{1,8}", "[a-z ()0-9]{1,30}", scalar()), 0..6),
        cut in any::<proptest::sample::Index>(),
        flip in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
        extra in prop_oneof![Just(""), Just(r#","typeoid":23"#), Just(r#" , "optional" : true "#)],
        sep in prop_oneof![Just(","), Just(" , "), Just(",\n")],
    ) {
        let columns: Vec<String> = cols
            .iter()
            .map(|(n, t, v)| format!(r#"{{"name":"{n}","type":"{t}","value":{v}{extra}}}"#))
            .collect();
        let doc = format!(
            r#"{{"action":"{action}"{sep}"xid":5{sep}"lsn":"0/1A"{sep}"schema":"public"{sep}"table":"t"{sep}"columns":[{}]{sep}"pk":[{{"name":"id","type":"int"}}]}}"#,
            columns.join(sep)
        );
        // The whole row first, so the cut and flipped ones meet its cached headers.
        let headers = RefCell::default();
        whole_cut_and_flipped(&doc, (cut, flip, byte), |d| agrees_after(&headers, d));
    }
}

/// `check` on `doc`, on `doc` cut at `cut`, and on `doc` with the byte at `flip` set
/// to `byte` (where each is still text).
pub(super) fn whole_cut_and_flipped(
    doc: &str,
    (cut, flip, byte): (proptest::sample::Index, proptest::sample::Index, u8),
    check: impl Fn(&str),
) {
    check(doc);
    let cut_at = cut.index(doc.len() + 1);
    if doc.is_char_boundary(cut_at) {
        check(&doc[..cut_at]);
    }
    let mut flipped = doc.as_bytes().to_vec();
    let at = flip.index(flipped.len());
    flipped[at] = byte;
    if let Ok(flipped) = String::from_utf8(flipped) {
        check(&flipped);
    }
}

#[test]
fn a_tag_stands_for_one_table_s_headers_and_is_never_given_again() {
    let doc = |table: &str, second: &str| {
        format!(
            r#"{{"action":"I","schema":"s","table":"{table}","columns":[{{"name":"id","type":"int","value":1}},{second}]}}"#
        )
    };
    let (a, b) = (
        r#"{"name":"a","type":"text","value":"x"}"#,
        r#"{"name":"a","type":"jsonb","value":"x"}"#,
    );
    let headers = RefCell::new(Headers::default());
    // One read per row, checked against the serde path.
    let tag = |d: &str| {
        let change = row(d.as_bytes(), &mut headers.borrow_mut()).expect("fast path");
        let tag = change.columns_tag;
        assert_agrees(d, Some(change), |out| {
            super::super::v2::V2Decoder::in_transaction().feed_slow(Lsn(7), d.as_bytes(), out)
        });
        tag
    };
    // The first row fills the cache (no tag: its headers were read); the next ones
    // repeat them, whatever their values.
    assert_eq!(tag(&doc("t", a)), 0);
    let t = tag(&doc("t", a));
    assert_ne!(t, 0);
    assert_eq!(tag(&doc("t", &a.replace("\"x\"", "null"))), t);
    // Another type: no tag until a row repeats it.
    assert_eq!(tag(&doc("t", b)), 0);
    let tb = tag(&doc("t", b));
    assert!(tb != 0 && tb != t);
    // Fewer columns, all cached: a tag of their own, and back.
    let short = r#"{"action":"I","schema":"s","table":"t","columns":[{"name":"id","type":"int","value":1}]}"#;
    let ts = tag(short);
    assert!(ts != 0 && ts != tb);
    let tb2 = tag(&doc("t", b));
    assert!(tb2 != 0 && tb2 != tb && tb2 != ts);
    // One more column: read, so no tag.
    assert_eq!(tag(&doc("t", &format!("{b},{a}"))), 0);
    // Back to the first headers: a new tag, not the old one.
    assert_eq!(tag(&doc("t", a)), 0);
    let again = tag(&doc("t", a));
    assert!(again != 0 && ![t, tb, ts, tb2].contains(&again));
    // Another table with the same headers has its own tag.
    tag(&doc("u", a));
    let tu = tag(&doc("u", a));
    assert!(tu != 0 && tu != again);
    // A row that goes to the serde path after a header was read into the cache (a
    // later value the fast path does not take) retires the tag: the next row with
    // the new headers, every one cached now, gets a new one.
    let three = |second: &str, last: &str| {
        format!(
            r#"{{"action":"I","schema":"s","table":"w","columns":[{{"name":"id","type":"int","value":1}},{{"name":"{second}","type":"text","value":"x"}},{{"name":"b","type":"text","value":{last}}}]}}"#
        )
    };
    tag(&three("a", "null"));
    let tw = tag(&three("a", "null"));
    assert_ne!(tw, 0);
    let fails = three("c", r#""\u001b""#);
    assert!(row(fails.as_bytes(), &mut headers.borrow_mut()).is_none());
    agrees_after(&RefCell::default(), &fails);
    let renamed = tag(&three("c", "null"));
    assert!(
        renamed != 0 && renamed != tw,
        "{renamed}: the tag of (id, a, b) for (id, c, b)"
    );
    // A header too long to cache: never tagged.
    let long = format!(
        r#"{{"name":"{}","type":"int","value":1}}"#,
        "n".repeat(MAX_HEADER)
    );
    assert_eq!((tag(&doc("v", &long)), tag(&doc("v", &long))), (0, 0));
}

#[test]
fn a_table_s_rows_share_their_primary_key_names() {
    let doc = |table: &str, pk: &str| {
        format!(
            r#"{{"action":"I","schema":"s","table":"{table}","columns":[{{"name":"id","type":"int","value":1}},{{"name":"k","type":"int","value":2}}],"pk":[{pk}]}}"#
        )
    };
    let (id, id_k) = (
        r#"{"name":"id","type":"int"}"#,
        r#"{"name":"id","type":"int"},{"name":"k","type":"int"}"#,
    );
    let headers = RefCell::new(Headers::default());
    let read_fast = |d: &str| row(d.as_bytes(), &mut headers.borrow_mut());
    let read = |d: &str| {
        agrees_after(&headers, d);
        read_fast(d).expect("fast path").pk
    };
    let first = read(&doc("t", id));
    let second = read(&doc("t", id));
    assert!(Arc::ptr_eq(&first, &second), "the same bytes: one list");
    // Another key, another table, and back: each read as it is.
    let wider = read(&doc("t", id_k));
    assert_eq!(wider[..], ["id", "k"]);
    assert_eq!(read(&doc("u", id))[..], ["id"]);
    assert!(!Arc::ptr_eq(&read(&doc("t", id)), &wider));
    // The cached key's bytes followed by more than the key: read, and refused.
    read(&doc("t", id));
    let cached_then_more = doc("t", id).replace("}]}", "}]]}");
    assert!(read_fast(&cached_then_more).is_none());
    agrees_after(&headers, &cached_then_more);
    // Too long to keep: read each time, never cached.
    let long = format!(r#"{{"name":"{}","type":"int"}}"#, "n".repeat(MAX_PK));
    let columns = format!(
        r#"{{"name":"{}","type":"int","value":1}}"#,
        "n".repeat(MAX_PK)
    );
    let wide = doc("v", &long).replace(r#"{"name":"id","type":"int","value":1}"#, &columns);
    assert!(!Arc::ptr_eq(&read(&wide), &read(&wide)));
    // On a table with a short key cached, a long one empties the cache: the short
    // key is read again, then shared again.
    let short = read(&doc("w", id));
    assert!(Arc::ptr_eq(&short, &read(&doc("w", id))));
    let wide_w = doc("w", &long).replace(r#"{"name":"id","type":"int","value":1}"#, &columns);
    read(&wide_w);
    let again = read(&doc("w", id));
    assert!(
        !Arc::ptr_eq(&short, &again),
        "the long key emptied the cache"
    );
    assert!(Arc::ptr_eq(&again, &read(&doc("w", id))));
}
