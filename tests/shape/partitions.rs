//! Partitioned tables reported under their root (`partition_root: true`): a row moving
//! between partitions keeps its order, a partition attached while streaming and
//! backfilled partition rows are reported under the root too.

use serde_json::{json, Value};

use crate::support::case::Live;
use crate::support::kinesis::ReadRecord;
use crate::support::pg;

use super::*;

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
