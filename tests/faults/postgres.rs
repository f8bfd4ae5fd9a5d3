//! Faults on the PostgreSQL side: fast restart and crash of the server, a terminated
//! walsender, and connections cut by a proxy.

use std::time::{Duration, Instant};

use crate::support::pg::{self, Pg, PgOptions};
use crate::support::proxy::Proxy;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fast_restart_and_crash_lose_nothing() {
    // synchronous_commit=on: with it off, a crash may forget commits the workload saw
    // succeed; the truth would still be right, but the scenario would be murkier.
    let pg = Pg::start(PgOptions::default().set("synchronous_commit", "on"));
    let s = Scenario::new("pg_restart", &pg, pg.port);
    let streamer = s.start();
    let runner = s.workload(2, RATE);
    let mut worst: f64 = 0.0;
    for round in 0..scale(1, 3) {
        runner.wait_for(2_000 * (2 * round + 1)).await;
        let began = Instant::now();
        tokio::task::block_in_place(|| pg.restart_fast());
        let took = began.elapsed().as_secs_f64();
        let (up, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(up, after, &streamer).await;
        eprintln!(
            "fault-suite pg_restart: fast restart took {took:.2}s, recovered {rec:.2}s after"
        );
        worst = worst.max(rec);

        runner.wait_for(2_000 * (2 * round + 2)).await;
        tokio::task::block_in_place(|| {
            pg.stop_immediate();
            std::thread::sleep(Duration::from_secs(2));
            pg.start_again();
        });
        let (up, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(up, after, &streamer).await;
        eprintln!("fault-suite pg_restart: crash + start, recovered {rec:.2}s after the start");
        worst = worst.max(rec);
    }
    runner.wait_for(2_000 * (2 * scale(1, 3) + 1)).await;
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let log = terminate(s.name, streamer);
    report("pg_restart", &verdict, worst, &[log]);
    s.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn walsender_terminated_mid_stream_loses_nothing() {
    let s = Scenario::new("walsender_kill", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(3, RATE);
    let mut worst: f64 = 0.0;
    let rounds = scale(3, 10);
    for round in 1..=rounds {
        runner.wait_for(1_500 * round).await;
        let after = s.last_version();
        s.wait_for_walsender().await;
        let killed = Instant::now();
        let n = s.pg.psql(&format!(
            "SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots \
             WHERE slot_name = '{}' AND active_pid IS NOT NULL;",
            s.slot
        ));
        assert_eq!(n, "1", "no walsender to terminate in round {round}");
        worst = worst.max(s.recovered(killed, after, &streamer).await);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let log = terminate(s.name, streamer);
    report("walsender_terminated", &verdict, worst, &[log]);
    s.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_cut_by_a_proxy_lose_nothing() {
    let proxy = Proxy::start(pg::shared().port);
    let s = Scenario::new("proxy_cut", pg::shared(), proxy.port);
    let streamer = s.start();
    let runner = s.workload(4, RATE);
    let mut worst: f64 = 0.0;
    let rounds = scale(3, 10);
    for round in 1..=rounds {
        runner.wait_for(1_500 * round).await;
        let after = s.last_version();
        let cut = Instant::now();
        let n = proxy.cut_all();
        assert!(n >= 1, "no connection through the proxy in round {round}");
        worst = worst.max(s.recovered(cut, after, &streamer).await);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let log = terminate(s.name, streamer);
    report("proxy_cut", &verdict, worst, &[log]);
    assert!(
        proxy.accepted() > rounds,
        "the streamer never reconnected through the proxy"
    );
    s.cleanup();
}
