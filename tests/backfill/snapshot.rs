//! The initial snapshot: under a concurrent workload it replays to the tables, its
//! read records match live records of the same row and carry unique positions, and a
//! chunk reads only once its snapshot sees what committed before its low watermark
//! (a prepared transaction included, and a wait that fails is tried again).

use std::sync::Arc;
use std::time::Duration;

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use pg_cdc_to_kinesis::signal::{self, Signal};

use crate::support::case::{
    config_yaml, drop_slot, load, ops_yaml, streaming, streaming_in_process,
};
use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::pg::{self, unique_name, Pg, PgOptions};

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

/// A transaction whose commit record comes before a chunk's low watermark but which is
/// not visible yet (here: held by a synchronous standby that never answers; on a busy
/// host: for a moment) must not leave the chunk's older copy of its row on the stream
/// after its change. The chunk waits until its snapshot sees the transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_reads_only_once_its_snapshot_sees_what_committed_before_its_low_watermark() {
    let pg = Arc::new(Pg::start(PgOptions::default()));
    let db = pg.create_database(&unique_name("snap_visible"));
    let slot = unique_name("snap_visible");
    pg.execute(
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old'), (2, 'two');
             SELECT pg_create_logical_replication_slot('{slot}', 'wal2json');
             ALTER DATABASE {db} SET synchronous_commit = local;"
        ),
    );
    let stream = unique_stream_name("snap-visible");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    // From now on a commit waits for a standby that does not exist, except in the
    // sessions of `db`, which commit locally (the database's default) unless they ask.
    pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'; SELECT pg_reload_conf();");
    let held = {
        let (pg, db) = (Arc::clone(&pg), db.clone());
        std::thread::spawn(move || {
            pg.psql_in(
                &db,
                "SET synchronous_commit = on; UPDATE t SET v = 'new' WHERE id = 1;",
            )
        })
    };
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'";
    let deadline = Instant::now() + Duration::from_secs(30);
    while pg.psql(waiting).trim().parse::<i64>().unwrap_or(0) < 1 {
        assert!(
            Instant::now() < deadline,
            "the update never waited for the standby"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A writer idle in its transaction cannot have committed: the chunk does not wait
    // for it, and does not see its change.
    let idle = source::sql_connect(&pg.connect_params(SUPERUSER, &db))
        .await
        .unwrap();
    idle.batch_execute("BEGIN; UPDATE t SET v = 'uncommitted' WHERE id = 2")
        .await
        .unwrap();

    let (pipeline, _dir) = backfill_t(&pg, &db, &slot, &stream).await;
    // The update is on the stream; the chunk waits for its snapshot to see it.
    let kinds = |records: &[ReadRecord]| -> Vec<String> {
        user_records(records)
            .iter()
            .map(|(_, v)| v["kind"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    kinesis::read_until(&kinesalite().client(), &stream, 1, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early = kinds(&kinesis::read_all(&kinesalite().client(), &stream).await).join(",");
    assert_eq!(
        early, "update",
        "before the update is visible, nothing is read"
    );

    pg.psql("ALTER SYSTEM SET synchronous_standby_names = ''; SELECT pg_reload_conf();");
    held.join().expect("the held update ends");
    wait_backfilled(&pipeline, Duration::from_secs(60)).await;
    idle.batch_execute("ROLLBACK").await.unwrap();
    let records =
        kinesis::read_until(&kinesalite().client(), &stream, 3, Duration::from_secs(30)).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    let r = replay(&user_records(&records));
    assert_eq!(kinds(&records).join(","), "update,read,read");
    assert_eq!(r.rows["public.t|1"]["v"], "new", "{:?}", r.trace);
    assert_eq!(r.rows["public.t|2"]["v"], "two", "{:?}", r.trace);
    assert!(r.stale_reads.is_empty(), "{:?}", r.stale_reads);
    assert!(r.order_violations.is_empty(), "{:?}", r.order_violations);
}

/// A prepared transaction open at a chunk's low watermark is waited for (the chunk
/// cannot tell a `COMMIT PREPARED` that wrote its commit before the watermark from
/// one still to come); once it commits, the chunk reads the row as committed. The
/// test pins the wait, not that race.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_waits_for_a_prepared_transaction_and_then_reads_its_commit() {
    prepared_transaction_wait(false).await;
}

/// The chunk's session ends while it waits (the wait's query fails): the reader
/// abandons the chunk's window, the chunk is tried again on a new connection and
/// waits again, and its row is read once, after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_chunk_whose_wait_fails_is_tried_again_and_read_once() {
    prepared_transaction_wait(true).await;
}

/// The prepared-transaction case; with `interrupt`, the waiting session is
/// terminated once, and the chunk's next attempt must wait again.
async fn prepared_transaction_wait(interrupt: bool) {
    let pg = Pg::start(PgOptions::default().set("max_prepared_transactions", "4"));
    let db = pg.create_database(&unique_name("snap_prepared"));
    let slot = unique_name("snap_prepared");
    pg.execute(
        &db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'old');
             SELECT pg_create_logical_replication_slot('{slot}', 'wal2json');"
        ),
    );
    pg.psql_in(
        &db,
        "BEGIN; UPDATE t SET v = 'prepared' WHERE id = 1; PREPARE TRANSACTION 'snap_g1';",
    );
    let stream = unique_stream_name("snap-prepared");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let (pipeline, _dir) = backfill_t(&pg, &db, &slot, &stream).await;
    // The chunk's session has asked which transactions it waits for: its pid.
    let waiting = format!(
        "SELECT coalesce(min(pid), 0) FROM pg_stat_activity WHERE datname = '{db}' AND query LIKE '%pg_prepared_xacts%' AND pid <> pg_backend_pid()"
    );
    let read = || async { user_records(&kinesis::read_all(&kinesalite().client(), &stream).await) };
    let waiter = |not: i64| {
        let (pg, waiting, read) = (&pg, &waiting, &read);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let pid = pg.psql(waiting).trim().parse::<i64>().unwrap_or(0);
                if (pid != 0 && pid != not) || !read().await.is_empty() {
                    return pid;
                }
                assert!(
                    Instant::now() < deadline,
                    "the chunk neither waited nor read"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let first = waiter(0).await;
    if interrupt {
        pg.psql(&format!("SELECT pg_terminate_backend({first})"));
        let again = waiter(first).await;
        assert!(
            again != 0 && again != first,
            "the chunk was not tried again"
        );
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let early = read().await;
    assert!(
        early.is_empty(),
        "while the transaction is prepared the chunk waits: {early:?}"
    );

    pg.psql_in(&db, "COMMIT PREPARED 'snap_g1';");
    wait_backfilled(&pipeline, Duration::from_secs(60)).await;
    let records =
        kinesis::read_until(&kinesalite().client(), &stream, 2, Duration::from_secs(30)).await;
    pipeline.stop();
    pipeline.wait().await.unwrap();
    let kinds: Vec<String> = user_records(&records)
        .iter()
        .map(|(_, v)| v["kind"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(kinds.join(","), "update,read");
    let r = replay(&user_records(&records));
    let row = r
        .rows
        .get("public.t|1")
        .unwrap_or_else(|| panic!("{:?}", r.trace));
    assert_eq!(row["v"], "prepared", "{:?}", r.trace);
    assert!(r.stale_reads.is_empty(), "{:?}", r.stale_reads);
    assert!(r.order_violations.is_empty(), "{:?}", r.order_violations);
}

/// `slot`'s pipeline on `stream` (the slot exists), asked through `db`'s signal table
/// to backfill `public.t`.
async fn backfill_t(pg: &Pg, db: &str, slot: &str, stream: &str) -> (Pipeline, tempfile::TempDir) {
    let yaml = ops_yaml(pg, slot, db, stream, "", "      create_slot: false\n");
    let started = streaming_in_process(&yaml, kinesalite().sdk_config()).await;
    let client = source::sql_connect(&pg.connect_params(SUPERUSER, db))
        .await
        .unwrap();
    let request = Signal::Backfill {
        slot: slot.to_owned(),
        id: signal::new_id(),
        tables: vec!["public.t".into()],
        filter: None,
    };
    signal::emit(&client, &request).await.unwrap();
    started
}
