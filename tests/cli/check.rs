//! `check`: a failing server setting and a missing stream reported in one line each,
//! and no slot created.

use crate::support::kinesis;
use crate::support::pg::{self, Pg, PgOptions};
use crate::support::process::{self, assert_no_panic};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_on_wal_level_replica_and_says_it_must_be_logical() {
    let private = Pg::start(PgOptions::default().set("wal_level", "replica"));
    let case = CliCase::new(&private);
    let config = case.config(&[]);
    let endpoint = &kinesis::kinesalite().endpoint;
    case.kinesalite_stream(1).await;

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
    case.delete_kinesalite_stream().await;
    case.cleanup();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_ok_and_a_missing_stream_without_creating_a_slot() {
    let case = CliCase::new(pg::shared());
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
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{0}' OR slot_name LIKE '{0}\\_%';",
        case.slot
    ));
    assert_eq!(slots, "0", "check left a replication slot behind");

    kinesis::delete_stream(&client, &case.stream).await;
    case.cleanup();
}

/// Seven slots split the default 64 MiB below each slot's 10 MiB floor: `check` says
/// what they may hold together (here every slot's server refuses connections, so each
/// row fails fast and nothing else is reached).
#[test]
fn check_warns_when_the_slots_floor_holds_more_than_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let closed = kinesis::free_port();
    let mut yaml = String::from("replication_slots:\n");
    for i in 0..7 {
        yaml += &format!(
            "  - floor_{i}: {{host: 127.0.0.1, port: {closed}, user: u, password: p, db_name: d, kns_stream: s, checkpoint: false}}\n"
        );
    }
    let config = dir.path().join("configs.yml");
    std::fs::write(&config, yaml).unwrap_or_else(|e| panic!("write config: {e}"));
    let out = process::run(
        process::command(
            &format!("http://127.0.0.1:{closed}"),
            &["check", "--config", &config.to_string_lossy()],
        ),
        CHECK_TIMEOUT,
    );
    assert_eq!(out.code, Some(1), "{}", out.describe());
    for want in [
        "7 slots hold up to 10 MiB of records each",
        "together up to 70 MiB",
        "memory_budget_bytes: 73400320",
    ] {
        assert!(out.stderr.contains(want), "{want:?}: {}", out.describe());
    }
    assert_no_panic("check", &out.stderr);
}
