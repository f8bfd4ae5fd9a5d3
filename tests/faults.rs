//! The fault suite: proof that no fault loses a change or reorders a key. Each test runs
//! the real binary against real PostgreSQL and the scripted Kinesis stub under a mixed
//! workload (`support::workload`), injects one kind of fault, and checks the whole
//! stream against what PostgreSQL committed: lost == 0 and per-key order violations
//! == 0, always. Each prints one `fault-suite <scenario>: ...` line with the figures.
//!
//! `PG_CDC_TEST_FULL=1` (`scripts/test --full`) runs the long version (20 kills over
//! 100k changes, more repetitions); the default is sized for CI.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::support::kinesis::{unique_stream_name, verify, Verdict};
use crate::support::pg::{self, Pg, PgOptions, SUPERUSER};
use crate::support::process::Streamer;
use crate::support::proxy::Proxy;
use crate::support::stub::{KinesisStub, RecordError, StallMode, StubRecord};
use crate::support::workload::{self, key_and_id, key_changes, Runner, Workload};

const STARTUP: Duration = Duration::from_secs(30);
/// `shutdown_timeout_secs` of every config here.
const SHUTDOWN_SECS: u64 = 10;
/// How long a scenario may take to deliver everything once the faults are over.
const DRAIN: Duration = Duration::from_secs(180);
/// How long the key-change scenario keeps its failures on after the workload stopped.
const FAULTY_DRAIN: Duration = Duration::from_secs(60);
/// A fault is "recovered" when a change committed after it reaches Kinesis.
const RECOVER_LIMIT: Duration = Duration::from_secs(90);
/// Workload changes per second: enough to keep every batch path busy, little enough
/// that a debug build keeps up on 2 cores beside the other tests.
const RATE: u64 = 1_000;

fn full() -> bool {
    std::env::var("PG_CDC_TEST_FULL").is_ok_and(|v| v == "1")
}

/// `(default, full)` by mode.
fn scale<T>(default: T, full_mode: T) -> T {
    if full() {
        full_mode
    } else {
        default
    }
}

/// One scenario's database and workload, slot, stub stream and config.
struct Scenario<'a> {
    name: &'static str,
    pg: &'a Pg,
    wl: Workload,
    slot: String,
    stream: String,
    /// With routing on: the stream `wl_t0` is routed to (`tables:`).
    side: Option<String>,
    stub: KinesisStub,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl<'a> Scenario<'a> {
    /// The streamer connects to `pg` through `port` (the server's, or a proxy's).
    fn new(name: &'static str, pg: &'a Pg, port: u16) -> Scenario<'a> {
        Self::with_routing(name, pg, port, false)
    }

    /// With `routed`, the slot routes the workload's first table to a second stream.
    fn with_routing(name: &'static str, pg: &'a Pg, port: u16, routed: bool) -> Scenario<'a> {
        let wl = Workload::create(pg, &format!("flt_{name}"));
        let slot = pg::unique_name(&format!("flt_{name}"));
        let stream = unique_stream_name(&format!("flt-{name}"));
        let stub = KinesisStub::with_seed(0xfa17);
        stub.create_stream(&stream, 4);
        let side = routed.then(|| unique_stream_name(&format!("flt-{name}-side")));
        if let Some(side) = &side {
            stub.create_stream(side, 2);
        }
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        let mut yaml = format!(
            "shutdown_timeout_secs: {SHUTDOWN_SECS}\nreplication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      \
             port: {port}\n      user: {SUPERUSER}\n      password: {SUPERUSER}_pw\n      db_name: {db}\n      \
             options: {{add-tables: '{tables}'}}\n      kns_stream: {stream}\n      status_interval_secs: 1\n",
            db = wl.db,
            tables = wl.add_tables(),
        );
        if let Some(side) = &side {
            yaml += &format!(
                "      tables:\n        - match: public.{}\n          stream: {side}\n",
                wl.tables[0]
            );
        }
        let config = dir.path().join("configs.yml");
        std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("write config: {e}"));
        Scenario {
            name,
            pg,
            wl,
            slot,
            stream,
            side,
            stub,
            config,
            _dir: dir,
        }
    }

    fn spawn(&self) -> Streamer {
        Streamer::start(self.stub.endpoint(), &self.config)
    }

    /// Starts the streamer and waits until it streams.
    fn start(&self) -> Streamer {
        let mut s = self.spawn();
        assert!(
            s.wait_for_log("streaming from", STARTUP),
            "{}: the streamer did not start streaming:\n{}",
            self.name,
            s.log()
        );
        s
    }

    /// The workload at about `per_second` changes a second, straight to the server.
    fn workload(&self, seed: u64, per_second: u64) -> Runner {
        let params = workload::params(self.pg, &self.wl.db, self.pg.port);
        self.wl.spawn(params, seed, per_second)
    }

    /// The workload with primary-key changes (and so re-inserts of freed ids).
    fn workload_with_key_changes(&self, seed: u64, per_second: u64) -> Runner {
        let params = workload::params(self.pg, &self.wl.db, self.pg.port);
        self.wl.spawn_with_key_changes(params, seed, per_second)
    }

    fn last_version(&self) -> u64 {
        self.wl.last_version(self.pg)
    }

    /// Seconds from `since` until a change with a version above `after` (one committed
    /// after the fault) is on the stream. Panics after [`RECOVER_LIMIT`].
    async fn recovered(&self, since: Instant, after: u64, streamer: &Streamer) -> f64 {
        let mut scanned = 0;
        loop {
            if self.stub.record_count(&self.stream) > scanned {
                let records = self.stub.records(&self.stream);
                let newer = records[scanned..]
                    .iter()
                    .filter_map(|r| key_and_id(&r.data))
                    .any(|(_, id)| id / 2 > after);
                if newer {
                    return since.elapsed().as_secs_f64();
                }
                scanned = records.len();
            }
            assert!(
                since.elapsed() < RECOVER_LIMIT,
                "{}: nothing committed after the fault reached Kinesis within {RECOVER_LIMIT:?}:\n{}",
                self.name,
                streamer.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until every committed change is on the stream (or [`DRAIN`] passes).
    async fn drain(&self) -> (Vec<StubRecord>, Verdict) {
        let truth = self.wl.truth(self.pg);
        let deadline = Instant::now() + DRAIN;
        loop {
            while self.stub.record_count(&self.stream) < truth.len() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            let records = self.stub.records(&self.stream);
            let verdict = verify(&truth, &records, |r: &StubRecord| key_and_id(&r.data));
            if verdict.lost == 0 || Instant::now() >= deadline {
                return (records, verdict);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// [`Self::drain`] for a routed scenario: each stream checked against the changes
    /// of the tables routed to it, `(main, side)`.
    async fn drain_routed(&self) -> (Verdict, Verdict) {
        let side = self.side.as_deref().expect("a routed scenario");
        let routed = format!("{}|", self.wl.tables[0]);
        let truth = self.wl.truth(self.pg);
        let (side_truth, main_truth): (Vec<_>, Vec<_>) = truth
            .into_iter()
            .partition(|(key, _)| key.starts_with(&routed));
        let deadline = Instant::now() + DRAIN;
        loop {
            let main = self.stub.records(&self.stream);
            let on_side = self.stub.records(side);
            let verdicts = (
                verify(&main_truth, &main, |r: &StubRecord| key_and_id(&r.data)),
                verify(&side_truth, &on_side, |r: &StubRecord| key_and_id(&r.data)),
            );
            if (verdicts.0.lost == 0 && verdicts.1.lost == 0) || Instant::now() >= deadline {
                return verdicts;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Waits until a walsender serves the slot (the streamer may be between sessions).
    async fn wait_for_walsender(&self) {
        let sql = format!(
            "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{}' AND active_pid IS NOT NULL;",
            self.slot
        );
        let deadline = Instant::now() + STARTUP;
        while self.pg.psql(&sql) != "1" {
            assert!(
                Instant::now() < deadline,
                "{}: no walsender serves {}",
                self.name,
                self.slot
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The slot's `confirmed_flush_lsn`.
    fn confirmed_flush(&self) -> Lsn {
        let text = self.pg.psql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}';",
            self.slot
        ));
        Lsn::from_str(&text).unwrap_or_else(|e| panic!("slot {}: {text:?}: {e}", self.slot))
    }

    fn cleanup(self) {
        self.wl.cleanup(self.pg, &self.slot);
    }
}

/// Prints the scenario's figures and asserts the two guarantees.
#[track_caller]
fn report(name: &str, verdict: &Verdict, recover: f64, logs: &[String]) {
    eprintln!(
        "fault-suite {name}: committed={} delivered={} lost={} duplicates={} order_violations={} recover={recover:.2}",
        verdict.committed, verdict.delivered, verdict.lost, verdict.duplicates, verdict.order_violations
    );
    for log in logs {
        assert!(
            !log.contains("panicked at"),
            "{name}: the streamer panicked:\n{log}"
        );
    }
    assert!(
        verdict.committed > 0 && verdict.is_at_least_once_in_order(),
        "{name}: {verdict}\n--- last streamer log ---\n{}",
        logs.last().map_or("", |l| l.as_str())
    );
}

/// SIGTERM; asserts exit 0 within the shutdown timeout; returns the log.
fn terminate(name: &str, mut streamer: Streamer) -> String {
    let asked = Instant::now();
    streamer.signal(libc::SIGTERM);
    let status = streamer.wait_exit(Duration::from_secs(SHUTDOWN_SECS + 20));
    let took = asked.elapsed();
    let log = streamer.kill();
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{name}: SIGTERM exit after {took:?}:\n{log}"
    );
    assert!(
        took < Duration::from_secs(SHUTDOWN_SECS),
        "{name}: the stop took {took:?}:\n{log}"
    );
    log
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_throttling_partial_failures_and_5xx_lose_nothing() {
    let s = Scenario::new("kinesis_errors", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(5, RATE);
    let phase = Duration::from_secs(scale(3, 10));
    let mut worst: f64 = 0.0;
    type Fault = fn(&KinesisStub);
    let faults: [(&str, Fault); 4] = [
        ("throttle storm", |k| k.throttle_rate(0.8)),
        ("30% partial failures", |k| {
            k.fail_records(0.3, RecordError::Mixed)
        }),
        ("500s", |k| k.server_error_next(30, 500)),
        ("503s", |k| k.server_error_next(30, 503)),
    ];
    for (what, fault) in faults {
        fault(&s.stub);
        tokio::time::sleep(phase).await;
        s.stub.clear_faults();
        let (cleared, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(cleared, after, &streamer).await;
        eprintln!("fault-suite kinesis_errors: {what}: recovered {rec:.2}s after the fault ended");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_errors", &verdict, worst, &[log]);
    assert!(
        stats.throttled_requests > 0 && stats.failed_records > 0 && stats.server_errors > 0,
        "the faults did not happen: {stats:?}"
    );
    s.cleanup();
}

/// Primary-key changes (`UPDATE … SET id`) and re-inserts of the freed ids under 30%
/// partial failures. The audit table records a key change as the old row's delete and
/// the new row's insert, so every row, old key and new key, is checked on its own:
/// nothing lost, and each row's changes in commit order. Every key-change delete has its
/// insert (same `commit_lsn`, next `seq`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_changes_and_reused_keys_under_partial_failures_keep_each_row_in_order() {
    let s = Scenario::new("key_changes", pg::shared(), pg::shared().port);
    let streamer = s.start();
    // The failures last through the workload and then until everything is on the
    // stream, or for at most FAULTY_DRAIN (the backoff makes a faulty drain slow).
    s.stub.fail_records(0.3, RecordError::Mixed);
    let runner = s.workload_with_key_changes(11, RATE);
    runner.wait_for(scale(6_000, 20_000)).await;
    runner.stop().await;
    let committed = s.wl.truth(s.pg).len();
    let stopped = Instant::now();
    while s.stub.record_count(&s.stream) < committed && stopped.elapsed() < FAULTY_DRAIN {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let under_faults = s.stub.record_count(&s.stream);
    let faulty_drain = stopped.elapsed().as_secs_f64();
    s.stub.clear_faults();
    let (records, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    let kc = key_changes(records.iter().map(|r| r.data.as_slice()));
    eprintln!(
        "fault-suite key_changes: {} key changes, {} ids inserted again after a key change moved them, \
         {} failed records; {under_faults} of {committed} records delivered under the failures, \
         the last {faulty_drain:.1}s after the workload stopped",
        kc.paired, kc.reused, stats.failed_records
    );
    // No fault ends while the workload runs: there is no recovery time to report.
    report("key_changes(30% partial failures)", &verdict, 0.0, &[log]);
    assert!(stats.failed_records > 0, "no record failed: {stats:?}");
    assert!(
        kc.paired > 0 && kc.reused > 0,
        "the workload changed no key or reused none: {kc:?}"
    );
    assert_eq!(
        kc.unpaired, 0,
        "key-change records without their other half: {kc:?}"
    );
    s.cleanup();
}

/// Stalls of 12 s that end in a 503 or in a late success.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_stalls_lose_nothing() {
    let s = Scenario::new("kinesis_stall", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(6, RATE);
    let stall = Duration::from_secs(12);
    let mut worst: f64 = 0.0;
    for mode in [StallMode::Unavailable, StallMode::Slow] {
        s.stub.stall_for(stall, mode);
        tokio::time::sleep(stall).await;
        let (ended, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(ended, after, &streamer).await;
        eprintln!("fault-suite kinesis_stall: {mode:?}: recovered {rec:.2}s after the stall");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_stall", &verdict, worst, &[log]);
    assert!(stats.stalled_requests > 0, "nothing stalled: {stats:?}");
    s.cleanup();
}

/// A stall longer than the 30 s request timeout whose requests are stored: the answers
/// are lost, the streamer resends, and Kinesis holds duplicates, but nothing is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinesis_lost_responses_duplicate_but_lose_nothing() {
    let s = Scenario::new("kinesis_lost", pg::shared(), pg::shared().port);
    let streamer = s.start();
    let runner = s.workload(7, RATE);
    runner.wait_for(1_000).await;
    let stall = Duration::from_secs(35);
    s.stub.stall_for(stall, StallMode::LostResponse);
    tokio::time::sleep(stall).await;
    let (ended, after) = (Instant::now(), s.last_version());
    let rec = s.recovered(ended, after, &streamer).await;
    runner.stop().await;
    let (_, verdict) = s.drain().await;
    let stats = s.stub.stats();
    let log = terminate(s.name, streamer);
    report("kinesis_lost_response", &verdict, rec, &[log]);
    assert!(stats.stalled_requests > 0, "nothing stalled: {stats:?}");
    assert!(
        verdict.duplicates > 0,
        "requests held past the 30 s timeout were stored and resent, so duplicates were expected: {verdict}"
    );
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
        let logged = log
            .lines()
            .find_map(|l| l.split("stopped; confirmed ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|lsn| Lsn::from_str(lsn).ok())
            .unwrap_or_else(|| panic!("no `stopped; confirmed <lsn>` line:\n{log}"));
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

/// A record's `commit_lsn`.
fn commit_lsn(r: &StubRecord) -> Option<Lsn> {
    let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
    Lsn::from_str(v.get("commit_lsn")?.as_str()?).ok()
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

/// Routing on: the slot sends one of the workload's tables to a second stream. Kills
/// and Kinesis errors (throttling, partial failures) hit both streams; each stream
/// must hold every change of its tables, in per-key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_to_two_streams_under_kills_and_kinesis_errors_loses_nothing() {
    let s = Scenario::with_routing("routing", pg::shared(), pg::shared().port, true);
    let mut streamer = s.start();
    let runner = s.workload(13, RATE);
    let mut logs = Vec::new();
    let mut worst: f64 = 0.0;
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..scale(2, 8) {
        tokio::time::sleep(Duration::from_millis(rng.random_range(500..2000))).await;
        let after = s.last_version();
        let killed = Instant::now();
        logs.push(streamer.kill());
        streamer = s.spawn();
        worst = worst.max(s.recovered(killed, after, &streamer).await);
    }
    type Fault = fn(&KinesisStub);
    let faults: [(&str, Fault); 2] = [
        ("throttle storm", |k| k.throttle_rate(0.8)),
        ("30% partial failures", |k| {
            k.fail_records(0.3, RecordError::Mixed)
        }),
    ];
    for (what, fault) in faults {
        fault(&s.stub);
        tokio::time::sleep(Duration::from_secs(scale(3, 10))).await;
        s.stub.clear_faults();
        let (cleared, after) = (Instant::now(), s.last_version());
        let rec = s.recovered(cleared, after, &streamer).await;
        eprintln!("fault-suite routing: {what}: recovered {rec:.2}s after the fault ended");
        worst = worst.max(rec);
    }
    runner.stop().await;
    let (main, side) = s.drain_routed().await;
    logs.push(terminate(s.name, streamer));
    report("routing(main stream)", &main, worst, &logs);
    report("routing(side stream)", &side, worst, &logs);
    let stats = s.stub.stats();
    assert!(
        stats.throttled_requests > 0 && stats.failed_records > 0,
        "the faults did not happen: {stats:?}"
    );
    s.cleanup();
}
