//! The `pg-cdc-to-kinesis` binary as operators run it: exit codes and messages for bad
//! configs, `check`, crash (SIGKILL) and restart without loss, a clean stop on SIGTERM,
//! a million-row transaction under a memory bound, and the console progress lines.
//!
//! Every test drives the real process against real PostgreSQL and kinesalite (or the
//! stub where a count of a million records matters), with its own database, slot and
//! stream, and drops its slot at the end.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use rand::Rng;

use crate::support::kinesis::{self, verify, ReadRecord, Verdict};
use crate::support::pg::{self, Pg, PgOptions, SUPERUSER};
use crate::support::process::{self, Streamer};
use crate::support::stub::{KinesisStub, StubRecord};

const STARTUP: Duration = Duration::from_secs(30);
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// `shutdown_timeout_secs` in every config here.
const SHUTDOWN_SECS: u64 = 10;
/// Ids are spread over this many partition keys (`k = id % KEYS`), so per-key order
/// is a real property and not one record per key.
const KEYS: u64 = 7;
const PANIC_TEXT: &str = "panicked at";

/// One test's database, table (8 columns), slot and stream.
struct Case<'a> {
    pg: &'a Pg,
    db: String,
    table: String,
    slot: String,
    stream: String,
    dir: tempfile::TempDir,
}

impl<'a> Case<'a> {
    /// The table's identity is FULL: the tests key rows by `{columns: [k]}`, which a
    /// delete carries only then (the start-up check refuses it otherwise).
    fn new(pg: &'a Pg) -> Case<'a> {
        let db = pg.create_database(&pg::unique_name("cli_db"));
        let table = pg::unique_name("cli_t");
        pg.execute(
            &db,
            &format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, k int NOT NULL, name text, qty int, \
                 price numeric(12,2), flag boolean, created timestamptz, note text); \
                 ALTER TABLE {table} REPLICA IDENTITY FULL;"
            ),
        );
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
        Case {
            pg,
            db,
            table,
            slot: pg::unique_name("cli_slot"),
            stream: kinesis::unique_stream_name("cli"),
            dir,
        }
    }

    /// Writes the config (seed format) with `extra` slot keys; returns its path.
    fn config(&self, extra: &[&str]) -> PathBuf {
        let mut yaml = format!(
            "shutdown_timeout_secs: {SHUTDOWN_SECS}\ndatabases:\n  - db: &db\n      host: 127.0.0.1\n      port: {}\n      \
             user: {SUPERUSER}\n      password: {SUPERUSER}_pw\n      db_name: {}\nreplication_slots:\n  - {}:\n      \
             <<: *db\n      options: {{add-tables: 'public.{}'}}\n      kns_stream: {}\n",
            self.pg.port, self.db, self.slot, self.table, self.stream
        );
        for line in extra {
            yaml += &format!("      {line}\n");
        }
        let path = self.dir.path().join("configs.yml");
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Commits rows `ids` in one transaction.
    fn insert(&self, ids: std::ops::RangeInclusive<u64>) {
        self.pg
            .execute(&self.db, &insert_sql(&self.table, *ids.start(), *ids.end()));
    }

    /// `(partition key, id)` per row in commit order, for `partition_key: {columns: [k]}`.
    fn truth_by_k(&self, ids: impl Iterator<Item = u64>) -> Vec<(String, u64)> {
        ids.map(|id| (format!("public.{}|{}", self.table, id % KEYS), id))
            .collect()
    }

    /// The slot's `confirmed_flush_lsn`.
    fn confirmed_flush(&self) -> Lsn {
        let text = self.pg.psql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{}';",
            self.slot
        ));
        Lsn::from_str(&text).unwrap_or_else(|e| panic!("slot {}: {e}", self.slot))
    }

    /// Drops the slot (after its walsender lets go) and the database.
    fn cleanup(self) {
        let slot = &self.slot;
        let deadline = Instant::now() + STARTUP;
        loop {
            self.pg.psql(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                 WHERE slot_name = '{slot}' AND active_pid IS NOT NULL;"
            ));
            let exists = self.pg.psql(&format!(
                "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}';"
            ));
            if exists == "0" {
                break;
            }
            match self.pg.try_psql_in(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{slot}');"),
            ) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => panic!("cannot drop slot {slot}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        self.pg.execute(
            "postgres",
            &format!("DROP DATABASE \"{}\" WITH (FORCE);", self.db),
        );
    }
}

/// One transaction inserting ids `from..=to` with 8 columns of mixed types.
fn insert_sql(table: &str, from: u64, to: u64) -> String {
    format!(
        "INSERT INTO {table} SELECT g, g % {KEYS}, 'name ' || g, g % 1000, g * 0.01, g % 2 = 0, \
         '2024-01-01 00:00:00+00'::timestamptz + g * interval '1 second', 'note' \
         FROM generate_series({from}, {to}) g;"
    )
}

/// The part of a record payload the verifier needs (a typed read: a million
/// `serde_json::Value`s take long in a debug build).
#[derive(serde::Deserialize)]
struct Payload {
    data: PayloadRow,
}

#[derive(serde::Deserialize)]
struct PayloadRow {
    id: u64,
}

/// `(partition key, data.id)` of a record, `None` if the payload is not ours.
fn key_and_id(partition_key: &str, data: &[u8]) -> Option<(String, u64)> {
    let payload: Payload = serde_json::from_slice(data).ok()?;
    Some((partition_key.to_string(), payload.data.id))
}

fn kinesalite_key_and_id(r: &ReadRecord) -> Option<(String, u64)> {
    key_and_id(&r.partition_key, &r.data)
}

/// Reads the stream until nothing in `truth` is missing or `timeout` passes.
async fn read_until_complete(
    stream: &str,
    truth: &[(String, u64)],
    timeout: Duration,
) -> (Vec<ReadRecord>, Verdict) {
    let client = kinesis::kinesalite().client();
    let deadline = Instant::now() + timeout;
    loop {
        let records = kinesis::read_all(&client, stream).await;
        let verdict = verify(truth, &records, kinesalite_key_and_id);
        if verdict.lost == 0 || Instant::now() >= deadline {
            return (records, verdict);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn start_streaming(endpoint: &str, config: &Path) -> Streamer {
    let mut streamer = Streamer::start(endpoint, config);
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "streamer did not start streaming:\n{}",
        streamer.log()
    );
    streamer
}

/// SIGTERM, then the exit code and how long the stop took.
fn terminate(mut streamer: Streamer) -> (Option<i32>, Duration, String) {
    let asked = Instant::now();
    streamer.signal(libc::SIGTERM);
    let status = streamer.wait_exit(Duration::from_secs(SHUTDOWN_SECS + 20));
    let took = asked.elapsed();
    let log = streamer.kill();
    (status.and_then(|s| s.code()), took, log)
}

fn assert_no_panic(what: &str, text: &str) {
    assert!(!text.contains(PANIC_TEXT), "{what} panicked:\n{text}");
}

#[test]
fn bad_configs_exit_2_naming_the_file_and_the_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 12,
        "only {} bad-config fixtures in {}",
        files.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(str::trim);
        let expect = expect.unwrap_or_else(|| {
            panic!("{} must start with `# expect: <substring>`", file.display())
        });
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = file.to_string_lossy().into_owned();
        for args in [
            vec!["--config", path.as_str()],
            vec!["check", "--config", path.as_str()],
        ] {
            let out = process::run(process::command("http://127.0.0.1:9", &args), CHECK_TIMEOUT);
            if out.code != Some(2)
                || !out.stderr.contains(expect)
                || !out.stderr.contains(&name)
                || out.stderr.contains(PANIC_TEXT)
            {
                failures.push(format!(
                    "{args:?}: want exit 2 and stderr with {expect:?} and {name:?}; got {}",
                    out.describe()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        files.len() * 2,
        failures.join("\n\n")
    );
}

#[test]
fn a_missing_config_file_exits_2_and_says_which_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let missing = dir.path().join("nowhere").join("configs.yml");
    let out = process::run(
        process::command(
            "http://127.0.0.1:9",
            &["--config", &missing.to_string_lossy()],
        ),
        CHECK_TIMEOUT,
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains(&*missing.to_string_lossy()),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("cannot read the config file"),
        "{}",
        out.describe()
    );
    assert_no_panic("missing --config", &out.stderr);

    // No --config: the default `configs.yml` in the working directory.
    let mut cmd = process::command("http://127.0.0.1:9", &["check"]);
    cmd.current_dir(dir.path());
    let out = process::run(cmd, CHECK_TIMEOUT);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("configs.yml"), "{}", out.describe());
    assert_no_panic("default config", &out.stderr);
}

/// Under `--log-format json` every stderr line is JSON (CloudWatch parses them), the
/// config error included; the exit code stays 2.
#[test]
fn config_errors_are_json_lines_under_log_format_json_and_exit_2() {
    let bad =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad/06-unknown-slot-key.yml");
    let bad = bad.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let missing = dir
        .path()
        .join("missing.yml")
        .to_string_lossy()
        .into_owned();
    for (config, expect) in [
        (&bad, "unknown key"),
        (&missing, "cannot read the config file"),
    ] {
        for command in ["run", "check", "status"] {
            let args = [command, "--config", config.as_str(), "--log-format", "json"];
            let out = process::run(process::command("http://127.0.0.1:9", &args), CHECK_TIMEOUT);
            assert_eq!(out.code, Some(2), "{args:?}: {}", out.describe());
            let lines: Vec<serde_json::Value> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{args:?}: not a JSON line ({e}): {l}"))
                })
                .collect();
            let [line] = lines.as_slice() else {
                panic!("{args:?}: want one JSON line: {}", out.describe())
            };
            assert_eq!(line["level"], "ERROR", "{line}");
            let message = line["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(expect) && message.contains(config.as_str()),
                "{args:?}: {line}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_wal_level_replica_and_says_it_must_be_logical() {
    let private = Pg::start(PgOptions::default().set("wal_level", "replica"));
    let case = Case::new(&private);
    let config = case.config(&[]);
    let endpoint = &kinesis::kinesalite().endpoint;
    kinesis::create_stream(&kinesis::kinesalite().client(), &case.stream, 1).await;

    let out = process::run(
        process::command(endpoint, &["check", "--config", &config.to_string_lossy()]),
        CHECK_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("wal_level"))
        .unwrap_or_else(|| panic!("no wal_level line: {}", out.describe()));
    assert!(
        line.contains("FAIL") && line.contains("logical") && line.contains("replica"),
        "{line}"
    );
    assert_no_panic("check", &out.stderr);
    kinesis::delete_stream(&kinesis::kinesalite().client(), &case.stream).await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_ok_and_a_missing_stream_without_creating_a_slot() {
    let case = Case::new(pg::shared());
    // No SSM here: with checkpoints on, check would (rightly) fail on it.
    let config = case.config(&["checkpoint: false"]);
    let config = config.to_string_lossy();
    let client = kinesis::kinesalite().client();
    let endpoint = &kinesis::kinesalite().endpoint;

    let out = process::run(
        process::command(endpoint, &["check", "--config", &config]),
        CHECK_TIMEOUT,
    );
    assert_eq!(
        out.code,
        Some(1),
        "stream not created yet: {}",
        out.describe()
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("stream"))
        .unwrap_or_default();
    assert!(line.contains("FAIL"), "{}", out.describe());
    assert!(line.contains("does not exist"), "{}", out.describe());

    kinesis::create_stream(&client, &case.stream, 1).await;
    let out = process::run(
        process::command(endpoint, &["check", "--config", &config]),
        CHECK_TIMEOUT,
    );
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout.contains(&format!(
            "{} (database {}, stream {}): OK",
            case.slot, case.db, case.stream
        )),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains("FAIL"), "{}", out.describe());
    assert_no_panic("check", &out.stderr);
    let slots = case.pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE '{}%';",
        case.slot
    ));
    assert_eq!(slots, "0", "check left a replication slot behind");

    kinesis::delete_stream(&client, &case.stream).await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_and_restart_loses_nothing_and_keeps_key_order() {
    const KILLS: usize = 4;
    const ROWS_PER_TXN: u64 = 5;
    let case = Case::new(pg::shared());
    let config = case.config(&["partition_key: {columns: [k]}"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    kinesis::create_stream(&kinesis::kinesalite().client(), &case.stream, 2).await;
    let mut streamer = start_streaming(&endpoint, &config);

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
        streamer = start_streaming(&endpoint, &config);
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

    let (code, _, log) = terminate(streamer);
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
    kinesis::delete_stream(&kinesis::kinesalite().client(), &case.stream).await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_confirms_and_a_restart_sends_nothing_twice() {
    let case = Case::new(pg::shared());
    let config = case.config(&["partition_key: {columns: [k]}"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    kinesis::create_stream(&kinesis::kinesalite().client(), &case.stream, 2).await;
    let streamer = start_streaming(&endpoint, &config);
    for txn in 0..10 {
        case.insert(txn * 20 + 1..=txn * 20 + 20);
    }
    let truth = case.truth_by_k(1..=200);
    let (records, verdict) =
        read_until_complete(&case.stream, &truth, Duration::from_secs(30)).await;
    verdict.assert_exactly_once_in_order();

    // Nothing in flight now: the stop must confirm everything that is on the stream.
    let (code, took, log) = terminate(streamer);
    assert_eq!(code, Some(0), "SIGTERM exit after {took:?}:\n{log}");
    assert!(
        took < Duration::from_secs(SHUTDOWN_SECS),
        "stop took {took:?}:\n{log}"
    );
    assert!(log.contains("shutdown requested"), "{log}");
    let logged = log
        .lines()
        .find_map(|l| l.split("stopped; confirmed ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|lsn| Lsn::from_str(lsn).ok())
        .unwrap_or_else(|| panic!("no `stopped; confirmed <lsn>` line:\n{log}"));
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

    let streamer = start_streaming(&endpoint, &config);
    case.insert(201..=205);
    let truth = case.truth_by_k(1..=205);
    let (_, verdict) = read_until_complete(&case.stream, &truth, Duration::from_secs(30)).await;
    let (code, _, log) = terminate(streamer);
    eprintln!("sigterm restart: {verdict}");
    verdict.assert_exactly_once_in_order();
    assert_eq!(code, Some(0), "{log}");
    kinesis::delete_stream(&kinesis::kinesalite().client(), &case.stream).await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_row_transaction_streams_in_bounded_memory() {
    const ROWS: u64 = 1_000_000;
    const RSS_LIMIT_KIB: u64 = 200 * 1024;
    let stub = KinesisStub::start();
    let case = Case::new(pg::shared());
    stub.create_stream(&case.stream, 4);
    let config = case.config(&[]);
    let mut streamer = start_streaming(stub.endpoint(), &config);

    let started = Instant::now();
    case.insert(1..=ROWS);
    let committed = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut last_report = Instant::now();
    while stub.record_count(&case.stream) < ROWS as usize && Instant::now() < deadline {
        let peak = streamer.sample_peak_rss_kib();
        assert!(
            peak < RSS_LIMIT_KIB,
            "peak RSS {} MiB while streaming:\n{}",
            peak / 1024,
            streamer.log()
        );
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!(
                "million: {} records after {:.0?}, peak RSS {} MiB",
                stub.record_count(&case.stream),
                started.elapsed(),
                peak / 1024
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let streamed = started.elapsed();
    let peak = streamer.sample_peak_rss_kib();
    let (code, _, log) = terminate(streamer);

    let records = stub.records(&case.stream);
    let truth: Vec<(String, u64)> = (1..=ROWS)
        .map(|id| (format!("public.{}|{id}", case.table), id))
        .collect();
    let verdict = verify(&truth, &records, |r: &StubRecord| {
        key_and_id(&r.partition_key, &r.data)
    });
    eprintln!(
        "million: insert committed in {committed:.1?}, all records in the stub after {streamed:.1?}; \
         peak RSS (VmHWM) {:.1} MiB; {verdict}",
        peak as f64 / 1024.0
    );
    assert_no_panic("streamer", &log);
    assert_eq!(verdict.delivered, ROWS as usize, "{verdict}\n{log}");
    verdict.assert_at_least_once_in_order();
    assert!(
        peak < RSS_LIMIT_KIB,
        "peak RSS {:.1} MiB, limit {} MiB",
        peak as f64 / 1024.0,
        RSS_LIMIT_KIB / 1024
    );
    assert_eq!(code, Some(0), "{log}");
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_prints_the_original_progress_lines() {
    let case = Case::new(pg::shared());
    let config = case.config(&["batch_max_records: 50"]);
    let endpoint = kinesis::kinesalite().endpoint.clone();
    kinesis::create_stream(&kinesis::kinesalite().client(), &case.stream, 1).await;
    let mut streamer = start_streaming(&endpoint, &config);
    case.insert(1..=500);

    let sending = format!("[{}] Sending changes to Kinesis: ", case.slot);
    let waiting = format!(
        "[{}] Waiting records to process. (Queue length: ",
        case.slot
    );
    let found =
        streamer.wait_for_log(&sending, STARTUP) && streamer.wait_for_log(&waiting, STARTUP);
    let (_, _, log) = terminate(streamer);
    assert!(found, "missing progress lines:\n{log}");
    // `[slot] Sending changes to Kinesis: <i> of <n> chunks. (Queue length: <q>)`
    let line = log
        .lines()
        .find_map(|l| l.split(&sending).nth(1))
        .unwrap_or_default();
    let numbers: Vec<u64> = line
        .replace(" of ", " ")
        .replace(" chunks. (Queue length: ", " ")
        .split([' ', ')'])
        .filter_map(|w| w.parse().ok())
        .collect();
    assert!(
        line.contains(" chunks. (Queue length: ") && numbers.len() == 3,
        "{line:?}"
    );
    assert!(
        numbers[0] >= 1 && numbers[0] <= numbers[1],
        "chunk i of n: {line:?}"
    );
    assert!(
        log.lines().any(|l| l.contains(&waiting) && l.contains(')')),
        "{log}"
    );
    kinesis::delete_stream(&kinesis::kinesalite().client(), &case.stream).await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exits_1_with_json_logs_when_no_slot_is_left_running() {
    let case = Case::new(pg::shared());
    let config = case.config(&[]);
    // The stream does not exist: the only slot stops for good, so the process ends.
    let endpoint = kinesis::kinesalite().endpoint.clone();
    let config_arg = config.to_string_lossy().into_owned();
    let cmd = process::command(
        &endpoint,
        &["run", "--config", &config_arg, "--log-format", "json"],
    );
    let done = process::run(cmd, Duration::from_secs(60));
    assert_eq!(done.code, Some(1), "{}", done.describe());
    let lines: Vec<serde_json::Value> = done
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    let stopped = lines
        .iter()
        .find(|l| {
            l["level"] == "ERROR"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("slot stopped"))
        })
        .unwrap_or_else(|| panic!("no error line about the stopped slot:\n{}", done.stderr));
    let message = stopped["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&case.stream) && message.contains("does not exist"),
        "{message}"
    );
    assert_eq!(stopped["slot"], case.slot.as_str());
    assert_no_panic("run", &done.stderr);
    case.cleanup();
}
