//! The `pg-cdc-to-kinesis` binary as operators run it: exit codes and messages for bad
//! configs, `check`, crash (SIGKILL) and restart without loss, a clean stop on SIGTERM,
//! a million-row transaction under a memory bound, and the console progress lines.
//!
//! Every test drives the real process against real PostgreSQL and kinesalite (or the
//! stub where a count of a million records matters), with its own database, slot and
//! stream, and drops its slot at the end.
//!
//! Shared here: the 8-column table case and the stream reads; the tests sit in one
//! submodule per theme.

mod check;
mod config_errors;
mod run;
mod stop_and_restart;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::case::{wraps_case, Case};
use crate::support::kinesis::{self, verify, ReadRecord, Verdict};
use crate::support::pg::{self, Pg, SUPERUSER};
use crate::support::process::SHUTDOWN_SECS;

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);
/// Ids are spread over this many partition keys (`k = id % KEYS`), so per-key order
/// is a real property and not one record per key.
const KEYS: u64 = 7;

/// One test's [`Case`] with an 8-column table.
struct CliCase<'a> {
    case: Case<'a>,
    table: String,
}

wraps_case!(CliCase<'a>);

impl<'a> CliCase<'a> {
    /// The table's identity is FULL: the tests key rows by `{columns: [k]}`, which a
    /// delete carries only then (the start-up check refuses it otherwise).
    fn new(pg: &'a Pg) -> CliCase<'a> {
        let table = pg::unique_name("cli_t");
        let case = Case::new(pg, "cli").with_sql(&format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, k int NOT NULL, name text, qty int, \
             price numeric(12,2), flag boolean, created timestamptz, note text); \
             ALTER TABLE {table} REPLICA IDENTITY FULL;"
        ));
        CliCase { case, table }
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
        self.write_config(&yaml)
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

    /// Drops the slot (after its walsender lets go) and the database.
    fn cleanup(self) {
        self.case.cleanup();
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
