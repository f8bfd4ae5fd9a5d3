//! Table shapes from the catalog, with real PostgreSQL 15 + wal2json and kinesalite:
//! an unchanged TOASTed column made explicit (`unchanged_toast: omit|list|placeholder`)
//! in both wal2json formats, and partitioned tables reported under their root
//! (`partition_root: true`) with rows moving between partitions kept in key order
//! and a partition attached while streaming.

use std::time::Duration;

use pg_cdc_to_kinesis::pipeline::SlotState;
use serde_json::{json, Value};

use crate::support::case::Live;
use crate::support::kinesis::ReadRecord;
use crate::support::pg::{self};

/// Payloads in commit order.
fn in_commit_order(records: &[ReadRecord]) -> Vec<Value> {
    let mut out: Vec<Value> = records.iter().map(|r| r.json().unwrap()).collect();
    out.sort_by_key(|v| {
        (
            v["commit_lsn"]
                .as_str()
                .map(|s| s.parse::<pg_cdc_to_kinesis::lsn::Lsn>().unwrap()),
            v["seq"].as_u64(),
        )
    });
    out
}

/// 8 kB of md5 hex: pglz cannot compress it, so it is stored out of line (TOASTed).
const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 256) i)";

const DOCS: &str = "CREATE TABLE docs (id int PRIMARY KEY, big text, small text, n int, \
                    doubled int GENERATED ALWAYS AS (n * 2) STORED)";

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

/// Two levels: `m` by region, its `eu` partition by id range.
const PARTITIONED: &str = "CREATE TABLE m (id int, region text, v text, PRIMARY KEY (id, region)) \
       PARTITION BY LIST (region); \
     CREATE TABLE m_eu PARTITION OF m FOR VALUES IN ('eu') PARTITION BY RANGE (id); \
     CREATE TABLE m_eu_lo PARTITION OF m_eu FOR VALUES FROM (0) TO (100); \
     CREATE TABLE m_eu_hi PARTITION OF m_eu FOR VALUES FROM (100) TO (1000); \
     CREATE TABLE m_us PARTITION OF m FOR VALUES IN ('us'); \
     CREATE TABLE other (id int PRIMARY KEY)";

/// `(kind, region, v)` of each record under `key`, in the stream's order.
fn under_key(records: &[ReadRecord], key: &str) -> Vec<(String, String, Value)> {
    records
        .iter()
        .filter(|r| r.partition_key == key)
        .map(|r| {
            let v = r.json().unwrap();
            (
                v["kind"].as_str().unwrap().to_string(),
                v["data"]["region"].as_str().unwrap_or("").to_string(),
                v["data"]["v"].clone(),
            )
        })
        .collect()
}

/// `add-tables` names the root only; its leaves (two levels down) are streamed under
/// the root's name and key, and a row moved between partitions stays in its key's
/// order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partitions_are_reported_under_their_root_and_a_moved_row_keeps_its_order() {
    let s = Live::new(
        "proot",
        PARTITIONED,
        "{format-version: 2, add-tables: 'public.m'}",
        "      partition_root: true\n      partition_key: {columns: [id]}\n",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(
        &s.db,
        "INSERT INTO m VALUES (1, 'eu', 'a'), (150, 'eu', 'b'), (2, 'us', 'c')",
    );
    pg.execute(&s.db, "INSERT INTO other VALUES (1)");
    // From m_eu_lo to m_us, then changed where it landed.
    pg.execute(&s.db, "UPDATE m SET region = 'us' WHERE id = 1");
    pg.execute(&s.db, "UPDATE m SET v = 'a2' WHERE id = 1");
    // From m_eu_hi to m_eu_lo: the key (id) changes too.
    pg.execute(&s.db, "UPDATE m SET id = 50 WHERE id = 150");
    pg.execute(&s.db, "TRUNCATE m_us");
    pg.execute(&s.db, "TRUNCATE m");
    pg.execute(&s.db, "INSERT INTO m VALUES (3, 'us', 'end')");
    let records = s.records(14).await;
    s.finish(pipeline).await;
    let got = in_commit_order(&records);
    let partition = |v: &Value| v["partition"].as_str().unwrap_or("").to_string();
    for v in &got {
        assert_eq!(
            (&v["schema"], &v["table"]),
            (&json!("public"), &json!("m")),
            "{v}"
        );
    }
    let row = |k: &str, r: &str, v: Value| (k.to_string(), r.to_string(), v);
    assert_eq!(
        under_key(&records, "public.m|1"),
        [
            row("insert", "eu", json!("a")),
            row("delete", "eu", json!(null)),
            row("insert", "us", json!("a")),
            row("update", "us", json!("a2")),
        ]
    );
    assert_eq!(
        under_key(&records, "public.m|150"),
        [
            row("insert", "eu", json!("b")),
            row("delete", "eu", json!(null))
        ]
    );
    assert_eq!(
        under_key(&records, "public.m|50"),
        [row("insert", "eu", json!("b"))]
    );
    // The moved row's halves name the partitions it left and entered.
    let moved: Vec<String> = got[3..5].iter().map(partition).collect();
    assert_eq!(moved, ["public.m_eu_lo", "public.m_us"]);
    // A partition's truncate names it; the root's has no `partition` (its
    // partitions' follow).
    let truncates: Vec<String> = got
        .iter()
        .filter(|v| v["kind"] == "truncate")
        .map(partition)
        .collect();
    assert_eq!(truncates[..2], ["public.m_us".to_string(), String::new()]);
    let mut rest = truncates[2..].to_vec();
    rest.sort();
    assert_eq!(rest, ["public.m_eu_hi", "public.m_eu_lo", "public.m_us"]);
}

/// A partition created, and a table attached as one, while the slot streams: their
/// rows arrive under the root (no `add-tables`: every table is decoded).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_attached_while_streaming_is_reported_under_its_root() {
    let s = Live::new(
        "pattach",
        PARTITIONED,
        "{format-version: 1}",
        "      partition_root: true\n",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(&s.db, "INSERT INTO m VALUES (1, 'us', 'a')");
    pg.execute(
        &s.db,
        "CREATE TABLE m_ca PARTITION OF m FOR VALUES IN ('ca'); \
         INSERT INTO m VALUES (2, 'ca', 'b')",
    );
    pg.execute(
        &s.db,
        "CREATE TABLE m_asia (id int, region text, v text, PRIMARY KEY (id, region)); \
         ALTER TABLE m ATTACH PARTITION m_asia FOR VALUES IN ('asia'); \
         INSERT INTO m VALUES (3, 'asia', 'c'); INSERT INTO other VALUES (9)",
    );
    let records = s.records(4).await;
    s.finish(pipeline).await;
    let mut got: Vec<(Value, String)> = records
        .iter()
        .map(|r| (r.json().unwrap(), r.partition_key.clone()))
        .collect();
    got.sort_by_key(|(v, _)| {
        v["commit_lsn"]
            .as_str()
            .unwrap()
            .parse::<pg_cdc_to_kinesis::lsn::Lsn>()
            .unwrap()
    });
    let got: Vec<(String, String, String)> = got
        .iter()
        .map(|(v, key)| {
            (
                v["table"].as_str().unwrap().to_string(),
                v["partition"].as_str().unwrap_or("").to_string(),
                key.clone(),
            )
        })
        .collect();
    let row = |t: &str, p: &str, k: &str| (t.to_string(), p.to_string(), k.to_string());
    assert_eq!(
        got,
        [
            row("m", "public.m_us", "public.m|1|\"us\""),
            row("m", "public.m_ca", "public.m|2|\"ca\""),
            row("m", "public.m_asia", "public.m|3|\"asia\""),
            row("other", "", "public.other|9"),
        ]
    );
}

/// The initial snapshot reads the leaves and reports their rows under the root, as
/// the live changes of the same rows are, on the same keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfilled_partition_rows_are_reported_under_their_root() {
    let s = Live::new(
        "pbackfill",
        &format!(
            "{PARTITIONED}; INSERT INTO m VALUES (1, 'eu', 'a'), (500, 'eu', 'b'), (2, 'us', 'c')"
        ),
        "{format-version: 2, add-tables: 'public.m'}",
        "      partition_root: true\n      snapshot: initial\n      checkpoint: false\n",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    let reads = s.records(3).await;
    pg.execute(&s.db, "UPDATE m SET v = 'c2' WHERE id = 2");
    let records = s.records(4).await;
    s.finish(pipeline).await;
    assert!(reads.len() >= 3, "{} records", reads.len());
    let mut got: Vec<(String, String, String, String)> = records
        .iter()
        .map(|r| {
            let v = r.json().unwrap();
            (
                r.partition_key.clone(),
                v["kind"].as_str().unwrap().to_string(),
                v["table"].as_str().unwrap().to_string(),
                v["partition"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    got.sort();
    let row = |k: &str, kind: &str, p: &str| {
        (
            k.to_string(),
            kind.to_string(),
            "m".to_string(),
            p.to_string(),
        )
    };
    assert_eq!(
        got,
        [
            row("public.m|1|\"eu\"", "read", "public.m_eu_lo"),
            row("public.m|2|\"us\"", "read", "public.m_us"),
            row("public.m|2|\"us\"", "update", "public.m_us"),
            row("public.m|500|\"eu\"", "read", "public.m_eu_hi"),
        ]
    );
}

/// The catalog connection is cut between two lookups: the next lookup reconnects
/// and the slot keeps streaming (no session restart), with the columns named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_catalog_connection_is_reopened_without_losing_the_change() {
    let s = Live::new(
        "toast_cut",
        &format!("{DOCS}; CREATE TABLE docs2 (LIKE docs INCLUDING ALL)"),
        "{format-version: 2}",
        "",
    )
    .await;
    let pg = pg::shared();
    let pipeline = s.streaming().await;
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs VALUES (1, {BIG}, 'a', 1)"),
    );
    assert_eq!(s.records(1).await.len(), 1);
    let killed = pg.psql_in(
        &s.db,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid() \
           AND backend_type = 'client backend'",
    );
    assert!(killed.trim().parse::<u32>().unwrap() >= 1, "{killed}");
    // A session that failed would be `Retrying` for a second or more.
    let status = pipeline.slots[0].clone();
    let watcher = tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..600 {
            let state = status.state();
            if state != SlotState::Streaming {
                seen.push(state);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seen
    });
    pg.execute(
        &s.db,
        &format!("INSERT INTO docs2 VALUES (1, {BIG}, 'a', 1)"),
    );
    pg.execute(&s.db, "UPDATE docs2 SET small = 'b' WHERE id = 1");
    let records = s.records(3).await;
    let left_streaming = watcher.await.unwrap();
    s.finish(pipeline).await;
    assert_eq!(left_streaming, [], "the session restarted");
    let got = in_commit_order(&records);
    assert_eq!(got.len(), 3);
    assert_eq!(got[2]["table"], "docs2");
    assert_eq!(got[2]["unchanged_toast"], json!(["big"]));
}
