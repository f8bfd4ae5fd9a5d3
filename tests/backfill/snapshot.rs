//! The initial snapshot: under a concurrent workload it replays to the tables, and its
//! read records match live records of the same row and carry unique positions.

use std::time::Duration;

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::case::{config_yaml, drop_slot, load, streaming};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initial_snapshot_under_a_concurrent_workload_replays_to_the_tables() {
    const ROWS: i64 = 50_000;
    let f = Fixture::new("snap_initial", &["t1", "t2", "t3"], ROWS).await;
    let (config, _dir) = f.config(
        "      snapshot: initial\n      snapshot_chunk_rows: 5000\n      aggregation: kpl\n      checkpoint: false\n",
    );
    let pipeline = streaming(&config, kinesalite().sdk_config()).await;

    let load = Load::start(&f, ROWS).await;
    wait_backfilled(&pipeline, Duration::from_secs(300)).await;
    let statements = load.finish().await;
    let (r, diff) = settled(&f).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);

    eprintln!(
        "initial snapshot: {} read records in {} chunks, {} changes, {statements} workload statements",
        r.reads,
        r.chunks.len(),
        r.changes
    );
    assert!(
        statements > 100,
        "the workload ran during the snapshot ({statements})"
    );
    assert!(r.reads > 0 && r.changes > 0);
    assert_consistent(&r, &diff, "initial snapshot");
    // Every table was read in chunks of 5,000.
    for t in &f.tables {
        let chunks = r
            .chunks
            .keys()
            .filter(|(table, _)| *table == format!("public.{t}"))
            .count();
        assert!(chunks >= 10, "public.{t} read in {chunks} chunks");
    }
}

/// `(commit_lsn, seq)` of each record: unique, and stable for a dedupe.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn read_records_match_live_records_of_the_same_row_and_carry_unique_positions() {
    for format in [1u8, 2] {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(&format!("snap_types_v{format}")));
        pg.execute(
            &db,
            "CREATE TABLE ty (a int, b text, id int, n numeric(40,10), f float8, nan float8, ok bool, ts timestamptz, j jsonb, arr int[], bin bytea, nothing text, PRIMARY KEY (id, a));
             INSERT INTO ty VALUES (1, 'quote \" and \\\\ and \t', 7, 12345678901234567890.1234567890, 1.5, 'NaN', true, '2026-01-02 03:04:05.123456+00', '{\"k\": [1, 2]}', '{1,2}', '\\x00ff', NULL);",
        );
        let slot = unique_name(&format!("snap_types_v{format}"));
        let stream = unique_stream_name("snap-types");
        kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
        let options = format!("{{format-version: {format}, add-tables: 'public.ty'}}");
        let (config, _dir) = load(&config_yaml(
            &[(&slot, &db, &options, &stream)],
            "      snapshot: initial\n      checkpoint: false\n",
        ));
        let pipeline = Pipeline::start(
            &config,
            &RunEnv {
                aws: kinesalite().sdk_config(),
            },
        );
        wait_backfilled(&pipeline, Duration::from_secs(60)).await;
        // The same row again, as a live insert.
        pg.execute(&db, "DELETE FROM ty; INSERT INTO ty SELECT * FROM (VALUES (1, 'quote \" and \\\\ and \t', 7, 12345678901234567890.1234567890::numeric, 1.5::float8, 'NaN'::float8, true, '2026-01-02 03:04:05.123456+00'::timestamptz, '{\"k\": [1, 2]}'::jsonb, '{1,2}'::int[], '\\x00ff'::bytea, NULL::text)) v;");
        let records =
            kinesis::read_until(&kinesalite().client(), &stream, 3, Duration::from_secs(30)).await;
        pipeline.stop();
        pipeline.wait().await.unwrap();
        drop_slot(&db, &slot);
        let recs = user_records(&records);
        let read = recs
            .iter()
            .find(|(_, v)| v["kind"] == "read")
            .expect("a read record");
        let insert = recs
            .iter()
            .find(|(_, v)| v["kind"] == "insert")
            .expect("an insert");
        assert_eq!(
            read.1["data"], insert.1["data"],
            "format {format}: a read row is printed as wal2json prints the row"
        );
        assert_eq!(
            serde_json::to_string(&read.1["data"]).unwrap(),
            serde_json::to_string(&insert.1["data"]).unwrap()
        );
        assert_eq!(read.0, insert.0, "format {format}: the same partition key");
        assert_eq!(
            read.1["snapshot"],
            serde_json::json!({"table": "public.ty", "chunk": 1})
        );
        let commit: Lsn = read.1["commit_lsn"].as_str().unwrap().parse().unwrap();
        assert!(commit > Lsn::ZERO);
        assert!(read.1["seq"].is_u64());
        let mut positions: Vec<(String, u64)> = recs
            .iter()
            .map(|(_, v)| {
                (
                    v["commit_lsn"].as_str().unwrap().to_string(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect();
        let n = positions.len();
        positions.sort();
        positions.dedup();
        assert_eq!(positions.len(), n, "(commit_lsn, seq) is unique");
    }
}
