//! An unchanged TOASTed column made explicit (`unchanged_toast: omit|list|placeholder`)
//! in both wal2json formats, also under `REPLICA IDENTITY FULL`.

use serde_json::{json, Value};

use crate::support::case::Live;
use crate::support::pg;

use super::*;

/// An update of another column leaves the TOASTed `big` out; the record says so as
/// `mode` asks, and so does the insert half of a primary-key change.
async fn unchanged_toast(format: u8, mode: &str) {
    let s = Live::new(
        &format!("toast_{mode}_v{format}"),
        DOCS,
        &format!("{{format-version: {format}, add-tables: 'public.docs'}}"),
        &format!("      unchanged_toast: {mode}\n"),
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs VALUES (1, {BIG}, 'a', 1)"),
    );
    // The value really is stored out of line.
    let external = pg.psql_in(
        &s.db,
        "SELECT (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %s', \
                reltoastrelid::regclass), false, true, '')))[1]::text::int > 0 \
         FROM pg_class WHERE relname = 'docs'",
    );
    assert!(external.contains('t'), "{external}");
    pg.execute(&s.db, "UPDATE docs SET small = 'b', n = 2 WHERE id = 1");
    pg.execute(
        &s.db,
        &format!("UPDATE docs SET big = {BIG} || 'x' WHERE id = 1"),
    );
    pg.execute(&s.db, "UPDATE docs SET id = 2 WHERE id = 1");
    let records = s.records(5).await;
    s.finish(pipeline).await;

    let got = in_commit_order(&records);
    let kinds: Vec<&str> = got.iter().map(|v| v["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["insert", "update", "update", "delete", "insert"],
        "{got:#?}"
    );
    let cols = |v: &Value| -> Vec<String> {
        let mut c: Vec<String> = v["data"].as_object().unwrap().keys().cloned().collect();
        c.sort();
        c
    };
    // wal2json prints a stored generated column like any other.
    assert_eq!(cols(&got[0]), ["big", "doubled", "id", "n", "small"]);
    assert_eq!(got[0]["data"]["big"].as_str().unwrap().len(), 8192);
    // The update that changed `big` carries it: nothing is left out.
    assert!(got[2].get("unchanged_toast").is_none(), "{}", got[2]);
    assert_eq!(got[2]["data"]["big"].as_str().unwrap().len(), 8193);
    assert!(
        got[3].get("unchanged_toast").is_none(),
        "delete: {}",
        got[3]
    );
    for v in [&got[1], &got[4]] {
        match mode {
            "omit" => {
                assert_eq!(cols(v), ["doubled", "id", "n", "small"], "{v}");
                assert!(v.get("unchanged_toast").is_none(), "{v}");
            }
            "list" => {
                assert_eq!(cols(v), ["doubled", "id", "n", "small"], "{v}");
                assert_eq!(v["unchanged_toast"], json!(["big"]), "{v}");
            }
            "placeholder" => {
                assert_eq!(cols(v), ["big", "doubled", "id", "n", "small"], "{v}");
                assert_eq!(v["data"]["big"], "__debezium_unavailable_value", "{v}");
                assert!(v.get("unchanged_toast").is_none(), "{v}");
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(got[4]["key_change"], true);
    assert_eq!(got[1]["data"]["small"], "b");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_omit_v1() {
    unchanged_toast(1, "omit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_list_v1() {
    unchanged_toast(1, "list").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_placeholder_v1() {
    unchanged_toast(1, "placeholder").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_omit_v2() {
    unchanged_toast(2, "omit").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_list_v2() {
    unchanged_toast(2, "list").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_toast_placeholder_v2() {
    unchanged_toast(2, "placeholder").await;
}

/// With REPLICA IDENTITY FULL the old row carries the TOASTed value, but wal2json
/// still leaves it out of the new row: the record names it, and a consumer finds
/// the value in `old`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_identity_full_still_leaves_the_toasted_value_out_of_the_new_row() {
    let s = Live::new(
        "toast_full",
        &format!("{DOCS}; ALTER TABLE docs REPLICA IDENTITY FULL"),
        "{format-version: 2, add-tables: 'public.docs'}",
        "",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs VALUES (1, {BIG}, 'a', 1)"),
    );
    pg.execute(&s.db, "UPDATE docs SET small = 'b' WHERE id = 1");
    let records = s.records(2).await;
    s.finish(pipeline).await;
    let got = in_commit_order(&records);
    let update = &got[1];
    assert!(
        update["data"].get("big").is_none(),
        "wal2json printed it after all"
    );
    assert_eq!(update["old"]["big"].as_str().map(str::len), Some(8192));
    assert_eq!(update["unchanged_toast"], json!(["big"]));
}
