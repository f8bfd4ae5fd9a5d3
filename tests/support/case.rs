//! The case builder: one test's set-up in one call. A [`Case`] is one test's database,
//! slot and stream names on a cluster, and a temp dir for its config; it writes the
//! config, gives the stream a home (the scripted stub or kinesalite), and drops what it
//! made. Starting the streamer is one call too: as a process with
//! `Streamer::streaming` (in `process.rs`), in process with [`Running::start`] or
//! [`Live`] (in `case/in_process.rs`).
//!
//! Never shares a name between tests and never drops a slot or database it did not name.

use std::path::PathBuf;

use pg_cdc_to_kinesis::lsn::Lsn;

use super::kinesis::{self, kinesalite, unique_stream_name};
use super::pg::{unique_name, Pg, SUPERUSER};
use super::stub::KinesisStub;

mod in_process;

pub use in_process::*;

/// One test's names on `pg`: a database, a slot and a stream (not created), and a temp
/// dir for its config file.
pub struct Case<'a> {
    pub pg: &'a Pg,
    pub db: String,
    pub slot: String,
    pub stream: String,
    pub dir: tempfile::TempDir,
}

impl<'a> Case<'a> {
    /// A new database `<prefix>_db_…`, slot `<prefix>_slot_…` and stream `<prefix>-…`.
    pub fn new(pg: &'a Pg, prefix: &str) -> Case<'a> {
        let db = pg.create_database(&unique_name(&format!("{prefix}_db")));
        Case::in_database(pg, db, prefix)
    }

    /// [`Case::new`] in a database the caller made (a workload's).
    pub fn in_database(pg: &'a Pg, db: String, prefix: &str) -> Case<'a> {
        Case {
            pg,
            db,
            slot: unique_name(&format!("{prefix}_slot")),
            stream: unique_stream_name(prefix),
            dir: tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}")),
        }
    }

    /// Runs `sql` (tables, rows) in the case's database.
    pub fn with_sql(self, sql: &str) -> Case<'a> {
        self.pg.execute(&self.db, sql);
        self
    }

    /// A fresh scripted stub holding the case's stream with `shards` shards.
    pub fn stub(&self, shards: u32) -> KinesisStub {
        let stub = KinesisStub::start();
        stub.create_stream(&self.stream, shards);
        stub
    }

    /// Creates the case's stream on the shared kinesalite.
    pub async fn kinesalite_stream(&self, shards: i32) {
        kinesis::create_stream(&kinesalite().client(), &self.stream, shards).await;
    }

    /// Deletes the case's stream from the shared kinesalite.
    pub async fn delete_kinesalite_stream(&self) {
        kinesis::delete_stream(&kinesalite().client(), &self.stream).await;
    }

    /// `replication_slots:` with the case's slot alone (see [`slot_entry`]), reaching
    /// PostgreSQL on `port` (the server's, or a proxy's).
    pub fn slot_yaml(&self, port: u16, options: &str, keys: &[&str]) -> String {
        let entry = slot_entry(&self.slot, port, &self.db, options, &self.stream, keys);
        format!("replication_slots:\n{entry}")
    }

    /// Where [`Case::write_config`] writes.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("configs.yml")
    }

    /// Writes `yaml` as the case's `configs.yml`; returns its path.
    pub fn write_config(&self, yaml: &str) -> PathBuf {
        let path = self.config_path();
        std::fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// The slot's `confirmed_flush_lsn`.
    pub fn confirmed_flush(&self) -> Lsn {
        self.pg.confirmed_flush(&self.slot)
    }

    /// Drops the slot (after its walsender lets go) and the database.
    pub fn cleanup(self) {
        self.pg.drop_slot(&self.slot);
        self.pg.drop_database(&self.db);
    }
}

/// A test that panics before [`Case::cleanup`] still drops its slot and database, so
/// that they do not pile up on the shared cluster (slots hold WAL and count against
/// `max_replication_slots`) for the tests after it. Best effort, for a few seconds at
/// most, and never a second panic: the first one is the test's verdict.
impl Drop for Case<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self
                .pg
                .try_drop_slot(&self.slot, std::time::Duration::from_secs(5));
            let _ = self.pg.try_drop_database(&self.db);
        }
    }
}

/// `Deref<Target = Case>` for a test's own case type that keeps its [`Case`] in a field
/// `case` and adds what its tests share (a table, a workload, a stub): its tests then
/// read `case.db`, `case.slot`, `case.stream` as on a plain [`Case`].
/// `wraps_case!(Name<'a>)` for a type borrowing its cluster, `wraps_case!(Name)` for
/// one on the shared cluster (`Case<'static>`).
macro_rules! wraps_case {
    ($name:ident<$lt:lifetime>) => {
        impl<$lt> std::ops::Deref for $name<$lt> {
            type Target = $crate::support::case::Case<$lt>;
            fn deref(&self) -> &Self::Target {
                &self.case
            }
        }
    };
    ($name:ident) => {
        impl std::ops::Deref for $name {
            type Target = $crate::support::case::Case<'static>;
            fn deref(&self) -> &Self::Target {
                &self.case
            }
        }
    };
}
pub(crate) use wraps_case;

/// One `replication_slots` entry: `slot` reading `db` on 127.0.0.1:`port` as
/// [`SUPERUSER`] with wal2json `options` (a YAML flow map; none if empty) into `stream`,
/// then `keys`, one slot key each (a key's further lines are indented with it).
pub fn slot_entry(
    slot: &str,
    port: u16,
    db: &str,
    options: &str,
    stream: &str,
    keys: &[&str],
) -> String {
    let mut yaml = format!(
        "  - {slot}:\n      host: 127.0.0.1\n      port: {port}\n      user: {SUPERUSER}\n      \
         password: {SUPERUSER}_pw\n      db_name: {db}\n"
    );
    if !options.is_empty() {
        yaml += &format!("      options: {options}\n");
    }
    yaml += &format!("      kns_stream: {stream}\n");
    for key in keys {
        for line in key.lines() {
            yaml += &format!("      {line}\n");
        }
    }
    yaml
}
