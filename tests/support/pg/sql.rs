//! SQL on a test cluster: connection parameters for the test users, `psql` as the
//! bootstrap superuser, and the slot helpers tests share (confirmed position, drop
//! after the walsender lets go). Never starts or stops a server: `pg.rs` owns that.

use std::process::{Command, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Secret;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::ConnectParams;

use super::{password_for, Pg, SUPERUSER};

impl Pg {
    /// Connection parameters over TCP for one of the test users.
    pub fn connect_params(&self, user: &str, db: &str) -> ConnectParams {
        ConnectParams {
            host: "127.0.0.1".into(),
            port: self.port,
            user: user.into(),
            password: password_for(user).map(Secret::new),
            dbname: db.into(),
            application_name: "pg-cdc-to-kinesis-test".into(),
            sslmode: pg_cdc_to_kinesis::config::SslMode::Prefer,
            sslrootcert: None,
            hostaddr: None,
            channel_binding: Default::default(),
            require_auth: Default::default(),
        }
    }

    /// Create a database owned by [`SUPERUSER`]; returns its name.
    pub fn create_database(&self, name: &str) -> String {
        self.psql(&format!("CREATE DATABASE \"{name}\" OWNER {SUPERUSER};"));
        name.to_string()
    }

    /// Run SQL (one or more statements) in database `postgres` as the bootstrap
    /// superuser; returns unaligned, tuples-only output. Panics on any error.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }

    /// [`Pg::psql`] in database `db`.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        self.try_psql_in(db, sql)
            .unwrap_or_else(|e| panic!("psql in {db} failed: {e}\nSQL: {sql}"))
    }

    /// Run SQL, discarding output. Panics on any error.
    pub fn execute(&self, db: &str, sql: &str) {
        self.psql_in(db, sql);
    }

    /// Run SQL; `Err(stderr)` if psql or a statement failed.
    pub fn try_psql_in(&self, db: &str, sql: &str) -> Result<String, String> {
        use std::io::Write;
        let mut child = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-f", "-"])
            .arg("-h")
            .arg(&self.socket_dir)
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run psql: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(sql.as_bytes())
                .map_err(|e| format!("writing to psql: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("waiting for psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The slot's `confirmed_flush_lsn`; panics if the slot does not exist.
    pub fn confirmed_flush(&self, slot: &str) -> Lsn {
        let text = self.psql(&format!(
            "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}';"
        ));
        Lsn::from_str(&text).unwrap_or_else(|e| panic!("slot {slot}: {text:?}: {e}"))
    }

    /// Drops `slot` if it exists: ends the walsender that holds it, then drops it,
    /// retrying for up to 30 s while a streamer lets go. Panics if it cannot.
    pub fn drop_slot(&self, slot: &str) {
        self.try_drop_slot(slot, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("cannot drop slot {slot}: {e}"));
    }

    /// [`Pg::drop_slot`] retrying for up to `within`; `Err` with the last error if the
    /// slot is still there then (never panics).
    pub fn try_drop_slot(&self, slot: &str, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            let exists = self.try_psql_in(
                "postgres",
                &format!(
                    "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                     WHERE slot_name = '{slot}' AND active_pid IS NOT NULL; \
                     SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}';"
                ),
            )?;
            if exists.ends_with('0') {
                return Ok(());
            }
            match self.try_psql_in(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{slot}');"),
            ) {
                Ok(_) => return Ok(()),
                Err(e) if Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Drops database `db`, closing its connections.
    pub fn drop_database(&self, db: &str) {
        self.try_drop_database(db)
            .unwrap_or_else(|e| panic!("cannot drop database {db}: {e}"));
    }

    /// [`Pg::drop_database`] without panicking.
    pub fn try_drop_database(&self, db: &str) -> Result<(), String> {
        self.try_psql_in("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE);"))
            .map(drop)
    }
}
