//! Tables without a replica identity: listed by `check`, and their skipped updates
//! counted (a metric) and warned about once per table.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::check;

use crate::support::case::{local, try_get};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name, SUPERUSER};
use crate::support::process;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lists_decoded_tables_without_a_replica_identity() {
    let pg = pg::shared();
    let case = case("pf_ident").await;
    let (db, stream) = (&case.db, &case.stream);
    pg.execute(
        db,
        "CREATE TABLE keyed (id int PRIMARY KEY); \
         CREATE TABLE nokey (v text); \
         CREATE TABLE full_ident (v text); ALTER TABLE full_ident REPLICA IDENTITY FULL; \
         CREATE TABLE nothing (id int PRIMARY KEY); ALTER TABLE nothing REPLICA IDENTITY NOTHING; \
         CREATE TABLE ignored (v text)",
    );
    let (config, _dir) = case_config(
        &case,
        "      checkpoint: false\n      options: {filter-tables: 'public.ignored'}\n",
    );
    let rows = check::check(&config, &kinesalite().sdk_config()).await;
    let found = finding(&rows, "replident")
        .clone()
        .expect_err("tables without a replica identity passed");
    assert!(
        found.contains("public.nokey") && found.contains("public.nothing"),
        "{found}"
    );
    assert!(
        !found.contains("keyed,") && !found.contains("full_ident") && !found.contains("ignored"),
        "{found}"
    );
    assert!(found.contains("REPLICA IDENTITY FULL"), "{found}");
    pg.execute(
        db,
        "ALTER TABLE nokey REPLICA IDENTITY FULL; ALTER TABLE nothing REPLICA IDENTITY DEFAULT",
    );
    let rows = check::check(&config, &kinesalite().sdk_config()).await;
    assert!(
        finding(&rows, "replident").is_ok(),
        "{}",
        check::render(&rows)
    );
    assert!(rows[0].ok(), "{}", check::render(&rows));
    kinesis::delete_stream(&kinesalite().client(), stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipped_updates_are_counted_and_warned_about_once_per_table() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_skip"));
    pg.execute(
        &db,
        "CREATE TABLE nokey (id int, v text); INSERT INTO nokey SELECT g, 'a' FROM generate_series(1, 300) g",
    );
    let slot = unique_name("pf_skip");
    let stream = unique_stream_name("pf_skip");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let port = kinesis::free_port();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(
        &path,
        format!(
            "http_listen: 127.0.0.1:{port}\n{}",
            slot_yaml(&slot, &db, &stream, SUPERUSER, "      checkpoint: false\n")
        ),
    )
    .unwrap();
    let streamer = process::Streamer::streaming(&kinesalite().endpoint, &path);
    pg.execute(&db, "UPDATE nokey SET v = 'b'; DELETE FROM nokey WHERE id <= 10; INSERT INTO nokey VALUES (0, 'c')");
    // The insert comes through; the 310 updates and deletes before it cannot.
    let records =
        kinesis::read_until(&kinesalite().client(), &stream, 1, Duration::from_secs(60)).await;
    assert_eq!(records.len(), 1, "{}", streamer.log());
    let metrics = loop_metric(port, "pg_cdc_to_kinesis_changes_skipped_total", 310.0).await;
    assert_eq!(metrics, Some(310.0), "{}", streamer.log());
    let log = streamer.kill();
    // Lines about the skipped changes (the start-up note that the table has no
    // primary key is another matter).
    let lines = log
        .lines()
        .filter(|l| l.contains("nokey") && l.contains("skipped"))
        .count();
    assert_eq!(
        lines, 1,
        "one warning for the table, not one per row:\n{log}"
    );
    let warning = log
        .lines()
        .find(|l| l.contains("nokey") && l.contains("skipped"))
        .unwrap_or_default();
    assert!(warning.contains("REPLICA IDENTITY FULL"), "{warning}");
    pg.drop_slot(&slot);
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

/// Polls `/metrics` until `name` reaches `want` (or 30 s pass); its last value.
async fn loop_metric(port: u16, name: &str, want: f64) -> Option<f64> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok((_, body)) = try_get(local(port), "/metrics").await {
            last = body
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok());
            if last == Some(want) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last
}
