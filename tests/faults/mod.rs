//! The fault suite: proof that no fault loses a change or reorders a key. Each test runs
//! the real binary against real PostgreSQL and the scripted Kinesis stub under a mixed
//! workload (`support::workload`), injects one kind of fault, and checks the whole
//! stream against what PostgreSQL committed: lost == 0 and per-key order violations
//! == 0, always. Each prints one `fault-suite <scenario>: ...` line with the figures.
//!
//! `PG_CDC_TEST_FULL=1` (`scripts/test --full`) runs the long version (20 kills over
//! 100k changes, more repetitions); the default is sized for CI.
//!
//! Shared here: the scenario (workload, slot, stub, config) and the report every
//! scenario ends with; the scenarios sit in one submodule per kind of fault.

mod kinesis;
mod postgres;
mod process;
mod routing;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;

use crate::support::case::{wraps_case, Case};
use crate::support::kinesis::{unique_stream_name, verify, Verdict};
use crate::support::pg::Pg;
use crate::support::process::{Stopped, Streamer, SHUTDOWN_SECS, STARTUP};
use crate::support::stub::{KinesisStub, StubRecord};
use crate::support::workload::{self, key_and_id, Runner, Workload};

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
    case: Case<'a>,
    wl: Workload,
    /// With routing on: the stream `wl_t0` is routed to (`tables:`).
    side: Option<String>,
    stub: KinesisStub,
    config: PathBuf,
}

wraps_case!(Scenario<'a>);

impl<'a> Scenario<'a> {
    /// The streamer connects to `pg` through `port` (the server's, or a proxy's).
    fn new(name: &'static str, pg: &'a Pg, port: u16) -> Scenario<'a> {
        Self::with_routing(name, pg, port, false)
    }

    /// With `routed`, the slot routes the workload's first table to a second stream.
    fn with_routing(name: &'static str, pg: &'a Pg, port: u16, routed: bool) -> Scenario<'a> {
        let prefix = format!("flt_{name}");
        let wl = Workload::create(pg, &prefix);
        let case = Case::in_database(pg, wl.db.clone(), &prefix);
        let stub = KinesisStub::with_seed(0xfa17);
        stub.create_stream(&case.stream, 4);
        let side = routed.then(|| unique_stream_name(&format!("flt-{name}-side")));
        let routing = side.as_ref().map(|side| {
            stub.create_stream(side, 2);
            format!(
                "tables:\n  - match: public.{}\n    stream: {side}",
                wl.tables[0]
            )
        });
        let mut keys = vec!["status_interval_secs: 1"];
        keys.extend(routing.as_deref());
        let options = format!("{{add-tables: '{}'}}", wl.add_tables());
        let config = case.write_config(&format!(
            "shutdown_timeout_secs: {SHUTDOWN_SECS}\n{}",
            case.slot_yaml(port, &options, &keys)
        ));
        Scenario {
            name,
            case,
            wl,
            side,
            stub,
            config,
        }
    }

    fn spawn(&self) -> Streamer {
        Streamer::start(self.stub.endpoint(), &self.config)
    }

    /// Starts the streamer and waits until it streams.
    fn start(&self) -> Streamer {
        Streamer::streaming(self.stub.endpoint(), &self.config)
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

    fn cleanup(self) {
        self.case.cleanup();
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
fn terminate(name: &str, streamer: Streamer) -> String {
    let Stopped { code, took, log } = streamer.terminate();
    assert_eq!(code, Some(0), "{name}: SIGTERM exit after {took:?}:\n{log}");
    assert!(
        took < Duration::from_secs(SHUTDOWN_SECS),
        "{name}: the stop took {took:?}:\n{log}"
    );
    log
}

/// A record's `commit_lsn`.
fn commit_lsn(r: &StubRecord) -> Option<Lsn> {
    let v: serde_json::Value = serde_json::from_slice(&r.data).ok()?;
    Lsn::from_str(v.get("commit_lsn")?.as_str()?).ok()
}
