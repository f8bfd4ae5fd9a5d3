//! The admin Lambda's commands against a real PostgreSQL 15 (wal2json) and moto (SSM),
//! called directly, one submodule per command (`provision`, `drop`, `health`,
//! `restart`, the config read from SSM in `config_source`), and once through the
//! Lambda runtime API (`lambda`). Shared here: the configs, contexts and slot helpers.

mod config_source;
mod drop;
mod health;
mod lambda;
mod provision;
mod restart;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pg_cdc_to_kinesis::admin::AdminContext;
use pg_cdc_to_kinesis::config::Config;
use serde_json::Value;

use crate::support::moto;
use crate::support::pg::{password_for, Pg, SUPERUSER};

/// One test's configs.yml with its slots, in a temp dir that lives as long as it.
struct Case {
    dir: tempfile::TempDir,
    config: Config,
}

impl Case {
    fn path(&self) -> PathBuf {
        self.dir.path().join("configs.yml")
    }
}

fn case(pg: &Pg, user: &str, password: Option<&str>, slots: &[&str]) -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut yaml = String::from("replication_slots:\n");
    for slot in slots {
        yaml += &format!(
            "  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {user}\n      db_name: postgres\n      kns_stream: {slot}-stream\n",
            pg.port
        );
        if let Some(pw) = password {
            yaml += &format!("      password: \"{pw}\"\n");
        }
    }
    let path = dir.path().join("configs.yml");
    std::fs::write(&path, yaml).expect("write configs.yml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    Case { dir, config }
}

fn admin_case(pg: &Pg, slots: &[&str]) -> Case {
    case(pg, SUPERUSER, password_for(SUPERUSER).as_deref(), slots)
}

fn ctx(namespace: &str) -> AdminContext {
    ctx_with_metrics(namespace).0
}

/// A context whose EMF lines go to the returned buffer.
fn ctx_with_metrics(namespace: &str) -> (AdminContext, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let ctx = AdminContext {
        aws: moto::shared().sdk_config(),
        namespace: namespace.to_string(),
        metrics_out: buf.clone(),
    };
    (ctx, buf)
}

fn slot_row(pg: &Pg, slot: &str) -> String {
    pg.psql(&format!(
        "SELECT plugin, active, confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ))
}

fn drop_if_exists(pg: &Pg, slot: &str) {
    pg.psql(&format!(
        "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' AND NOT active"
    ));
}

/// `pg_recvlogical` streaming from `slot`: makes the slot active, as the streamer would.
fn consume(pg: &Pg, slot: &str) -> Child {
    let bin = std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
    Command::new(bin.join("pg_recvlogical"))
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &pg.port.to_string(),
            "-U",
            SUPERUSER,
        ])
        .args(["-d", "postgres", "-S", slot, "--start", "-f", "/dev/null"])
        .env("PGPASSWORD", password_for(SUPERUSER).unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pg_recvlogical")
}

async fn wait_active(pg: &Pg, slot: &str, active: bool) {
    let want = if active { "t" } else { "f" };
    // 30 s: a walsender starts (or ends) slowly on a loaded cold machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = pg.psql(&format!(
            "SELECT active FROM pg_replication_slots WHERE slot_name = '{slot}'"
        ));
        if row.trim() == want {
            return;
        }
        if std::time::Instant::now() > deadline {
            panic!("slot {slot} never became active={active} in 30 s (last read: {row:?})");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn check<'a>(slot: &'a Value, name: &str) -> &'a Value {
    slot["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|f| f["check"] == name))
        .unwrap_or_else(|| panic!("no check {name} in {slot}"))
}
