//! Unit tests of the v1 chunk scanner: it answers as the serde path does, or not at all.

use super::*;
use crate::decode::fast::tests::{assert_agrees, scalar, whole_cut_and_flipped};
use crate::decode::tests::fixture_lines;
use crate::decode::v1::V1Decoder;
use crate::lsn::Lsn;
use proptest::prelude::*;
use std::cell::RefCell;
use std::sync::Arc;

fn fast(doc: &str) -> Option<Change> {
    row(doc.as_bytes(), &mut Headers::default())
}

/// Where the fast path answers, it answers what the serde path does (in a chunked
/// transaction).
fn agrees(doc: &str) {
    agrees_after(&RefCell::default(), doc);
}

/// [`agrees`], with the primary keys `headers` holds from earlier chunks.
fn agrees_after(headers: &RefCell<Headers>, doc: &str) {
    let fast = row(doc.as_bytes(), &mut headers.borrow_mut());
    assert_agrees(doc, fast, |out| {
        V1Decoder::item_slow(Lsn(7), doc.as_bytes(), out)
    });
}

#[test]
fn every_change_chunk_of_the_fixtures_decodes_as_the_serde_path_does() {
    let mut rows = 0;
    // One cache through all of them, as one decoder reads them: hits and misses.
    let headers = RefCell::default();
    for fixture in [
        include_str!("../../testdata/v1_chunks.jsonl"),
        include_str!("../../testdata/v1_chunks_messages.jsonl"),
        include_str!("../../testdata/v1_chunks_pretty.jsonl"),
    ] {
        for (_, data) in fixture_lines(fixture) {
            let Ok(data) = std::str::from_utf8(&data) else {
                assert!(row(&data, &mut Headers::default()).is_none());
                continue;
            };
            // As v1.rs hands it over: trimmed, without the `,` of later changes.
            let item = data.trim();
            let item = item.strip_prefix(',').unwrap_or(item);
            if !item.starts_with('{') || item.starts_with(r#"{"xid""#) {
                continue; // headers and closes are not changes
            }
            agrees_after(&headers, item);
            rows += usize::from(fast(item).is_some());
        }
    }
    assert!(rows >= 5, "only {rows} fixture chunks took the fast path");
}

#[test]
fn an_update_with_old_keys_takes_the_fast_path() {
    let doc = r#"{"kind":"update","schema":"public","table":"t","columnnames":["id","n"],"columntypes":["bigint","jsonb"],"columnvalues":[2,"{\"a\": 1}"],"oldkeys":{"keynames":["id"],"keytypes":["bigint"],"keyvalues":[1]},"pk":{"pknames":["id"],"pktypes":["bigint"]}}"#;
    let c = row(doc.as_bytes(), &mut Headers::default()).expect("fast path");
    assert_eq!(c.kind, Kind::Update);
    assert_eq!(c.identity[0].value.get(), "1");
    assert_eq!(c.columns[1].ty, ColumnType::Json);
    assert_eq!(c.pk[..], ["id"]);
    agrees(doc);
}

#[test]
fn what_it_does_not_fully_understand_goes_to_the_serde_path() {
    for doc in [
        r#"{"kind":"message","transactional":true,"prefix":"p","content":"c"}"#,
        r#"{"kind":"truncate","schema":"s","table":"t"}"#,
        r#"{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[1,2]}"#,
        r#"{"kind":"insert","table":"t","columnnames":["a"],"columntypes":["int","int"],"columnvalues":[1]}"#,
        r#"{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":[[1]]}"#,
        r#"{"kind":"insert","table":"t","columnnames":["a\"b"],"columnvalues":[1]}"#,
        r#"{"kind":"delete","table":"t","oldkeys":{"keynames":["a"]}}"#,
        r#"{"kind":"insert","table":"t","table":"u"}"#,
        r#"{"kind":"insert","table":"t","pk":{"pknames":["a"],"pknames":["b"]}}"#,
        r#"{"kind":"insert","table":"t"} x"#,
        r#"{"kind":"insert","table":"t","#,
        "{\"kind\":\"insert\",\"table\":\"t\",\"columnnames\":[\"a\"],\"columnvalues\":[\"\x01\"]}",
    ] {
        assert!(fast(doc).is_none(), "fast path took {doc}");
    }
}

/// Where serde's reading has its own rules (`null` for an absent option, unknown
/// fields twice, empty lists), the fast path agrees or declines.
#[test]
fn agrees_where_serde_has_its_own_rules() {
    let row = r#""table":"t","columnnames":["a"],"columnvalues":[1]"#;
    for extra in [
        r#","schema":null"#,
        r#","columntypes":null"#,
        r#","oldkeys":null"#,
        r#","pk":null"#,
        r#","x":1,"x":2"#,
        r#","pk":{"pknames":["a"],"pktypes":["int"],"pktypes":["int"]}"#,
        r#","columntypes":[]"#,
    ] {
        agrees(&format!(r#"{{"kind":"insert",{row}{extra}}}"#));
    }
    for doc in [
        r#"{"kind":"insert","table":"t","columnvalues":[1]}"#,
        r#"{"kind":"insert","table":"t","columnnames":[],"columnvalues":[]}"#,
    ] {
        agrees(doc);
    }
    let escaped =
        r#"{"kind":"insert","table":"t","columnnames":["a"],"columnvalues":["q\"b\\c\/d"]}"#;
    assert!(
        fast(escaped).is_some(),
        "escapes other than \\u take the fast path"
    );
    agrees(escaped);
}

proptest! {
    /// Generated chunks, whole and cut or flipped: the fast path never answers
    /// differently from the serde path.
    #[test]
    fn agrees_with_the_serde_path_on_generated_and_mutated_chunks(
        kind in prop_oneof![Just("insert"), Just("update"), Just("delete"), Just("message")],
        cols in proptest::collection::vec(("[a-z_]{1,8}", "[a-z ()0-9]{1,30}", scalar()), 0..6),
        types in any::<bool>(),
        old in any::<bool>(),
        cut in any::<proptest::sample::Index>(),
        flip in any::<proptest::sample::Index>(),
        byte in any::<u8>(),
        sep in prop_oneof![Just(","), Just(" , "), Just(",\n")],
    ) {
        let list = |f: &dyn Fn(&(String, String, String)) -> String| {
            cols.iter().map(f).collect::<Vec<_>>().join(sep)
        };
        let names = list(&|(n, _, _)| format!("\"{n}\""));
        let tys = list(&|(_, t, _)| format!("\"{t}\""));
        let vals = list(&|(_, _, v)| v.clone());
        let mut doc = format!(r#"{{"kind":"{kind}"{sep}"schema":"public"{sep}"table":"t"{sep}"columnnames":[{names}]"#);
        if types {
            doc += &format!(r#"{sep}"columntypes":[{tys}]"#);
        }
        doc += &format!(r#"{sep}"columnvalues":[{vals}]"#);
        if old {
            doc += &format!(r#"{sep}"oldkeys":{{"keynames":[{names}],"keytypes":[{tys}],"keyvalues":[{vals}]}}"#);
        }
        doc += r#","pk":{"pknames":["id"],"pktypes":["integer"]}}"#;
        // The whole chunk first: its cut and flipped copies meet a warm cache.
        let headers = RefCell::default();
        whole_cut_and_flipped(&doc, (cut, flip, byte), |d| agrees_after(&headers, d));
    }
}

#[test]
fn a_table_s_chunks_share_their_primary_key_names() {
    let doc = |table: &str, pk: &str| {
        format!(
            r#"{{"kind":"insert","schema":"s","table":"{table}","columnnames":["id","k"],"columntypes":["int","int"],"columnvalues":[1,2],"pk":{{"pknames":[{pk}],"pktypes":["int"]}}}}"#
        )
    };
    let mut headers = Headers::default();
    let mut read = |d: &str| row(d.as_bytes(), &mut headers).expect("fast path").pk;
    let first = read(&doc("t", r#""id""#));
    assert!(Arc::ptr_eq(&first, &read(&doc("t", r#""id""#))));
    assert_eq!(read(&doc("t", r#""k""#))[..], ["k"]);
    assert_eq!(read(&doc("u", r#""id""#))[..], ["id"]);
    assert_eq!(read(&doc("t", r#""id""#))[..], ["id"]);
}

#[test]
fn a_table_s_chunks_with_the_same_lists_share_a_tag() {
    let doc = |table: &str, names: &str, types: &str, values: &str| {
        format!(
            r#"{{"kind":"insert","schema":"s","table":"{table}","columnnames":[{names}],"columntypes":[{types}],"columnvalues":[{values}]}}"#
        )
    };
    let headers = RefCell::new(Headers::default());
    let read = |d: &str| {
        let change = row(d.as_bytes(), &mut headers.borrow_mut()).expect("fast path");
        assert_agrees(d, Some(change.clone()), |out| {
            V1Decoder::item_slow(Lsn(7), d.as_bytes(), out)
        });
        change
    };
    let t = |names, types| doc("t", names, types, "1,2");
    // The first chunk reads both lists: no tag yet; the next takes both: a tag.
    assert_eq!(read(&t(r#""id","k""#, r#""int","int""#)).columns_tag, 0);
    let tag = read(&t(r#""id","k""#, r#""int","int""#)).columns_tag;
    assert_ne!(tag, 0);
    assert_eq!(read(&t(r#""id","k""#, r#""int","int""#)).columns_tag, tag);
    // Another type: read, no tag; then a new tag for the new pair, never the old one.
    let text = r#""int","text""#;
    assert_eq!(read(&t(r#""id","k""#, text)).columns_tag, 0);
    let next = read(&t(r#""id","k""#, text)).columns_tag;
    assert!(next != 0 && next != tag);
    // A chunk that fails after reading new names (values of another length) goes to
    // serde, and leaves no tag standing for the names it replaced.
    assert!(row(
        doc("t", r#""a","b""#, text, "1").as_bytes(),
        &mut headers.borrow_mut()
    )
    .is_none());
    assert_eq!(read(&t(r#""id","k""#, text)).columns_tag, 0);
    // Without types (include-types off), no tag; another table, its own lists.
    let bare = r#"{"kind":"insert","schema":"s","table":"t","columnnames":["id","k"],"columnvalues":[1,2]}"#;
    assert_eq!(read(bare).columns_tag, 0);
    assert_eq!(read(bare).columns_tag, 0);
    assert_eq!(read(&doc("u", r#""id","k""#, text, "1,2")).columns_tag, 0);
    let u = read(&doc("u", r#""id","k""#, text, "1,2")).columns_tag;
    assert!(u != 0 && u != next);
    // `schema` after the lists (valid JSON, not wal2json's order): the lists are
    // looked up before the schema is known, and the tag comes from the same cache,
    // never from the table's under its real schema (read checks every tag's columns).
    let late = |names: &str, types: &str, at_end: bool| {
        let lists =
            format!(r#""columnnames":[{names}],"columntypes":[{types}],"columnvalues":[1]"#);
        match at_end {
            true => format!(r#"{{"kind":"insert","table":"v",{lists},"schema":"s"}}"#),
            false => format!(r#"{{"kind":"insert","schema":"s","table":"v",{lists}}}"#),
        }
    };
    read(&late(r#""a""#, r#""int""#, false));
    let a = read(&late(r#""a""#, r#""int""#, false)).columns_tag;
    read(&late(r#""b""#, r#""text""#, true));
    let b = read(&late(r#""b""#, r#""text""#, true)).columns_tag;
    assert!(a != 0 && b != a, "{a} {b}");
    // The schema between the two lists: the table is looked up once, before the
    // schema is known (the cache `late(.., true)` used), and both lists come from
    // there: read at first, then taken, with a tag of their own.
    let between = r#"{"kind":"insert","table":"v","columnnames":["a"],"schema":"s","columntypes":["int"],"columnvalues":[1]}"#;
    assert_eq!(read(between).columns_tag, 0);
    let c = read(between).columns_tag;
    assert!(c != 0 && c != a && c != b, "{a} {b} {c}");
}
