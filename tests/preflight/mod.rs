//! Start-up and `check` agree, and neither leaves a slot behind: a wrong stream or no
//! region fails before a slot exists, a slot of another database or plugin and a
//! dropped slot with a checkpoint are refused by both alike, a missing wal2json stops
//! the slot, tables without a replica identity are reported and counted, and `check`
//! (and a backfill chunk that waits) warns when a backfill cannot see other roles'
//! sessions' state.
//! Real PostgreSQL 15 + wal2json, kinesalite, moto; the pipeline and `check` in process.
//!
//! Shared here: the slot config and the stop and check readers; the tests sit in one
//! submodule per theme.

mod before_the_slot;
mod refusals;
mod replica_identity;
mod sessions;

use std::time::Duration;

use pg_cdc_to_kinesis::check::{self, CheckRow};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};

use crate::support::case::{load, wait_state, Case};
use crate::support::pg::{self, password_for, Pg, SUPERUSER};

/// One slot on the shared cluster: `user` (password `<user>_pw`), `extra` slot keys.
fn slot_yaml(slot: &str, db: &str, stream: &str, user: &str, extra: &str) -> String {
    slot_yaml_on(pg::shared(), slot, db, stream, user, extra)
}

/// [`slot_yaml`] on the cluster `pg`.
fn slot_yaml_on(pg: &Pg, slot: &str, db: &str, stream: &str, user: &str, extra: &str) -> String {
    format!(
        "replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {user}\n      password: {}\n      db_name: {db}\n      kns_stream: {stream}\n      status_interval_secs: 1\n{extra}",
        pg.port,
        password_for(user).unwrap_or_else(|| format!("{user}_pw")),
    )
}

/// One test's [`Case`] on the shared cluster, its stream created on kinesalite.
async fn case(prefix: &str) -> Case<'static> {
    let case = Case::new(pg::shared(), prefix);
    case.kinesalite_stream(1).await;
    case
}

/// The case's config as [`SUPERUSER`] with the slot keys `extra`, loaded.
fn case_config(case: &Case, extra: &str) -> (Config, tempfile::TempDir) {
    load(&slot_yaml(
        &case.slot,
        &case.db,
        &case.stream,
        SUPERUSER,
        extra,
    ))
}

/// Runs `config` until its one slot stops for good; the stop message.
async fn stop_message(config: &Config, aws: aws_config::SdkConfig) -> String {
    let pipeline = Pipeline::start(config, &RunEnv { aws });
    let state = wait_state(&pipeline.slots[0], Duration::from_secs(60), |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    pipeline.stop();
    let _ = pipeline.wait().await;
    match state {
        SlotState::Stopped { error } => error,
        other => panic!("the slot did not stop: {other:?}"),
    }
}

fn slot_exists(pg: &Pg, slot: &str) -> bool {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    )) != "0"
}

/// The finding of check `name` in the report's only row.
fn finding<'a>(rows: &'a [CheckRow], name: &str) -> &'a Result<String, String> {
    rows[0]
        .checks
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, r)| r)
        .unwrap_or_else(|| panic!("no {name} check in {}", check::render(rows)))
}
