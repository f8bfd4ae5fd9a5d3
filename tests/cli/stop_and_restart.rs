//! Crash (SIGKILL) and clean stop (SIGTERM) of the running binary, then a restart:
//! nothing lost, key order kept, nothing sent twice after a clean stop.

use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use rand::Rng;

use crate::support::kinesis;
use crate::support::pg::{self, SUPERUSER};
use crate::support::process::{
    assert_no_panic, logged_confirmation, Stopped, Streamer, SHUTDOWN_SECS,
};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_and_restart_loses_nothing_and_keeps_key_order() {
    const KILLS: usize = 4;
    const ROWS_PER_TXN: u64 = 5;
    let case = CliCase::new(pg::shared());
    let config = case.config(&["partition_key: {columns: [k]}"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    case.kinesalite_stream(2).await;
    let mut streamer = Streamer::streaming(&endpoint, &config);

    // ~40 commits per second from one connection, so commit order is id order.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let params = case.pg.connect_params(SUPERUSER, &case.db);
    let table = case.table.clone();
    let workload = tokio::spawn(async move {
        let client = pg_cdc_to_kinesis::source::sql_connect(&params)
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        let mut next = 1u64;
        while !*stop_rx.borrow_and_update() {
            let last = next + ROWS_PER_TXN - 1;
            client
                .batch_execute(&insert_sql(&table, next, last))
                .await
                .unwrap_or_else(|e| panic!("insert {next}..={last}: {e}"));
            next = last + 1;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        next - 1
    });

    let mut logs = Vec::new();
    let started = Instant::now();
    for _ in 0..KILLS {
        let delay = Duration::from_millis(rand::rng().random_range(300..1500));
        tokio::time::sleep(delay).await;
        logs.push(streamer.kill());
        streamer = Streamer::streaming(&endpoint, &config);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop_tx.send_replace(true);
    let last_id = workload.await.unwrap_or_else(|e| panic!("workload: {e}"));
    let truth = case.truth_by_k(1..=last_id);
    let (_, verdict) = read_until_complete(&case.stream, &truth, Duration::from_secs(90)).await;
    eprintln!(
        "sigkill: {KILLS} kills over {:.1}s, {} rows committed; {verdict}",
        started.elapsed().as_secs_f64(),
        truth.len()
    );

    let Stopped { code, log, .. } = streamer.terminate();
    logs.push(log);
    let reconnects: usize = logs.iter().map(|l| l.matches("reconnecting").count()).sum();
    eprintln!(
        "sigkill: {reconnects} reconnect warnings across {} streamer runs",
        logs.len()
    );
    for log in &logs {
        assert_no_panic("streamer", log);
    }
    assert!(
        verdict.is_at_least_once_in_order(),
        "after {KILLS} SIGKILLs: {verdict}\n--- last log ---\n{}",
        logs.last().map_or("", |l| l)
    );
    assert_eq!(
        code,
        Some(0),
        "last streamer did not stop cleanly:\n{}",
        logs.last().map_or("", |l| l)
    );
    case.delete_kinesalite_stream().await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_confirms_and_a_restart_sends_nothing_twice() {
    let case = CliCase::new(pg::shared());
    let config = case.config(&["partition_key: {columns: [k]}"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    case.kinesalite_stream(2).await;
    let streamer = Streamer::streaming(&endpoint, &config);
    for txn in 0..10 {
        case.insert(txn * 20 + 1..=txn * 20 + 20);
    }
    let truth = case.truth_by_k(1..=200);
    let (records, verdict) =
        read_until_complete(&case.stream, &truth, Duration::from_secs(30)).await;
    verdict.assert_exactly_once_in_order();

    // Nothing in flight now: the stop must confirm everything that is on the stream.
    let Stopped { code, took, log } = streamer.terminate();
    assert_eq!(code, Some(0), "SIGTERM exit after {took:?}:\n{log}");
    assert!(
        took < Duration::from_secs(SHUTDOWN_SECS),
        "stop took {took:?}:\n{log}"
    );
    assert!(log.contains("shutdown requested"), "{log}");
    let logged = logged_confirmation(&log);
    let confirmed = case.confirmed_flush();
    assert!(
        confirmed >= logged,
        "slot confirmed {confirmed}, log says {logged}"
    );
    let newest_change = records
        .iter()
        .filter_map(|r| {
            r.json()
                .ok()?
                .get("lsn")?
                .as_str()
                .and_then(|l| Lsn::from_str(l).ok())
        })
        .max()
        .unwrap_or_else(|| panic!("records carry no `lsn`"));
    assert!(
        confirmed > newest_change,
        "slot confirmed {confirmed}, but a record on the stream is at {newest_change}"
    );

    let streamer = Streamer::streaming(&endpoint, &config);
    case.insert(201..=205);
    let truth = case.truth_by_k(1..=205);
    let (_, verdict) = read_until_complete(&case.stream, &truth, Duration::from_secs(30)).await;
    let Stopped { code, log, .. } = streamer.terminate();
    eprintln!("sigterm restart: {verdict}");
    verdict.assert_exactly_once_in_order();
    assert_eq!(code, Some(0), "{log}");
    case.delete_kinesalite_stream().await;
    case.cleanup();
}
