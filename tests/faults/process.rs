//! Faults of the streamer process: SIGKILL at random moments, SIGTERM under load and
//! restarts, and the confirmed position keeping up with deliveries meanwhile.

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::pg;
use crate::support::process::logged_confirmation;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_loses_nothing() {
    let (kills, changes) = scale((5, 10_000), (20, 100_000));
    let s = Scenario::new("kill", pg::shared(), pg::shared().port);
    let mut streamer = s.start();
    let runner = s.workload(1, RATE * 2);
    let mut rng = StdRng::seed_from_u64(42);
    let mut logs = Vec::new();
    let mut worst: f64 = 0.0;
    for _ in 0..kills {
        let delay = rng.random_range(300..2500);
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let after = s.last_version();
        let killed = Instant::now();
        logs.push(streamer.kill());
        streamer = s.spawn();
        worst = worst.max(s.recovered(killed, after, &streamer).await);
    }
    runner.wait_for(changes).await;
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    logs.push(terminate(s.name, streamer));
    report(&format!("kill({kills} kills)"), &verdict, worst, &logs);
    assert!(verdict.committed as u64 >= changes * 9 / 10, "{verdict}");
    s.cleanup();
}

/// SIGTERM under load: a clean exit 0 within the timeout, the slot confirms what it
/// logged, and a restart re-sends at most the records of transactions past that
/// confirmation; SIGTERM when nothing is in flight re-sends nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_flushes_and_restarts_without_loss() {
    let s = Scenario::new("sigterm", pg::shared(), pg::shared().port);
    let mut streamer = s.start();
    let runner = s.workload(8, RATE);
    let mut logs = Vec::new();
    // Deliveries of transactions past the slot's confirmed position at each stop: the
    // only ones a restart may send again.
    let mut window = 0;
    let mut worst: f64 = 0.0;
    let rounds = scale(2, 6);
    for round in 1..=rounds {
        runner.wait_for(2_000 * round).await;
        let log = terminate(s.name, streamer);
        let confirmed = s.confirmed_flush();
        let logged = logged_confirmation(&log);
        assert!(
            confirmed >= logged,
            "slot confirmed {confirmed}, the log says {logged}"
        );
        window += s
            .stub
            .records(&s.stream)
            .iter()
            .filter(|r| commit_lsn(r).is_some_and(|c| c > confirmed))
            .count();
        logs.push(log);
        let (restarted, after) = (Instant::now(), s.last_version());
        streamer = s.spawn();
        worst = worst.max(s.recovered(restarted, after, &streamer).await);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    report("sigterm(under load)", &verdict, worst, &logs);
    assert!(
        verdict.duplicates <= window,
        "{} duplicates, but only {window} records were past the confirmed position at the stops",
        verdict.duplicates
    );

    // Everything delivered and confirmed: a stop and restart must send nothing twice.
    logs.push(terminate(s.name, streamer));
    let streamer = s.start();
    let (restarted, after) = (Instant::now(), s.last_version());
    let runner = s.workload(9, RATE);
    let rec = s.recovered(restarted, after, &streamer).await;
    runner.wait_for(500).await;
    runner.stop().await;
    let (_, idle) = s.drain().await;
    logs.push(terminate(s.name, streamer));
    report("sigterm(idle)", &idle, rec, &logs);
    assert_eq!(
        idle.duplicates, verdict.duplicates,
        "a restart after a stop with nothing in flight sent records again"
    );
    s.cleanup();
}

/// The confirmed position must follow deliveries while changes keep flowing (the README
/// promises a confirmation at least every second), or every reconnect replays the whole
/// session and the server keeps its WAL. Samples the slot once a second under a steady
/// workload and counts the records on the stream past the confirmed position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_position_follows_deliveries_under_continuous_load() {
    let s = Scenario::new("confirm_lag", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let start = s.confirmed_flush();
    let runner = s.workload(10, RATE);
    let mut worst_past = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let confirmed = s.confirmed_flush();
        let records = s.stub.records(&s.stream);
        let past = records
            .iter()
            .filter(|r| commit_lsn(r).is_some_and(|c| c > confirmed))
            .count();
        eprintln!(
            "fault-suite confirm_lag: confirmed {confirmed} (start {start}), {past} of {} records past it",
            records.len()
        );
        worst_past = worst_past.max(past);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let log = terminate(s.name, streamer);
    report("confirm_lag", &verdict, 0.0, &[log]);
    // At RATE changes a second and status updates every second, a few seconds' worth
    // is the most that may sit past the confirmed position.
    assert!(
        worst_past <= 3 * RATE as usize,
        "{worst_past} delivered records were past the slot's confirmed position: a reconnect would send them all again"
    );
    s.cleanup();
}
