//! A deterministic mixed workload (inserts, updates, deletes over several tables) and
//! its ground truth, for the fault suite.
//!
//! Every change stamps its row with a fresh `version` from one sequence, and an AFTER
//! trigger copies `(table, id, version, deleted)` into an audit table in the same
//! transaction. So the truth is exactly what PostgreSQL committed, even when a fault
//! leaves the workload unsure whether its last commit went through. The tables use
//! `REPLICA IDENTITY FULL` so a delete's record carries the version it removed.
//!
//! An update that changes a row's `id` (only with [`Workload::spawn_with_key_changes`])
//! is audited as the old row's delete followed by the new row's insert: that is how the
//! streamer delivers it, so each row (old key and new key) is checked on its own.
//!
//! Must never run concurrent writers: one connection commits in a sequence, so commit
//! order is version order and the audit's `seq` order is per-key commit order.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pg_cdc_to_kinesis::source::{sql_connect, ConnectParams};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;

use super::pg::{self, Pg, SUPERUSER};

/// Tables the workload writes; all are streamed.
pub const TABLES: usize = 3;
/// Row ids per table: small enough that updates and deletes hit live rows often.
const ID_SPACE: u32 = 500;
/// Statements per transaction.
const OPS_PER_TXN: usize = 20;
/// Share of updates that change the row's id, with key changes on.
const KEY_CHANGE_SHARE: f64 = 0.2;

/// What the writer does besides inserts, updates and deletes.
#[derive(Clone, Copy)]
struct Mix {
    /// Share of updates that move the row to a free id.
    key_changes: f64,
}

/// One database with the workload's tables, sequence, audit table and trigger.
pub struct Workload {
    pub db: String,
    pub tables: Vec<String>,
}

impl Workload {
    /// Creates a fresh database on `pg` and the schema in it.
    pub fn create(pg: &Pg, prefix: &str) -> Workload {
        let db = pg.create_database(&pg::unique_name(prefix));
        let tables: Vec<String> = (0..TABLES).map(|i| format!("wl_t{i}")).collect();
        let mut sql = String::from(
            "CREATE SEQUENCE wl_version;\n\
             CREATE TABLE wl_audit (seq bigserial PRIMARY KEY, tbl text NOT NULL, id int NOT NULL, version bigint NOT NULL, del boolean NOT NULL);\n\
             CREATE FUNCTION wl_audit() RETURNS trigger LANGUAGE plpgsql AS $$\n\
             BEGIN\n\
               IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.id <> NEW.id) THEN\n\
                 INSERT INTO wl_audit (tbl, id, version, del) VALUES (TG_TABLE_NAME, OLD.id, OLD.version, true);\n\
               END IF;\n\
               IF TG_OP <> 'DELETE' THEN\n\
                 INSERT INTO wl_audit (tbl, id, version, del) VALUES (TG_TABLE_NAME, NEW.id, NEW.version, false);\n\
               END IF;\n\
               RETURN NULL;\n\
             END $$;\n",
        );
        for t in &tables {
            sql += &format!(
                "CREATE TABLE {t} (id int PRIMARY KEY, version bigint NOT NULL, note text);\n\
                 ALTER TABLE {t} REPLICA IDENTITY FULL;\n\
                 CREATE TRIGGER {t}_audit AFTER INSERT OR UPDATE OR DELETE ON {t} FOR EACH ROW EXECUTE FUNCTION wl_audit();\n"
            );
        }
        pg.execute(&db, &sql);
        Workload { db, tables }
    }

    /// The wal2json `add-tables` value that streams exactly the workload's tables.
    pub fn add_tables(&self) -> String {
        self.tables
            .iter()
            .map(|t| format!("public.{t}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts writing about `per_second` changes a second through `params` (which may
    /// point at a proxy or a server that will restart) until [`Runner::stop`].
    pub fn spawn(&self, params: ConnectParams, seed: u64, per_second: u64) -> Runner {
        self.spawn_mix(params, seed, per_second, 0.0)
    }

    /// Like [`Workload::spawn`], but about a fifth of the updates move their row to an
    /// id that is free (`UPDATE … SET id = …`), so freed ids are inserted again later.
    pub fn spawn_with_key_changes(
        &self,
        params: ConnectParams,
        seed: u64,
        per_second: u64,
    ) -> Runner {
        self.spawn_mix(params, seed, per_second, KEY_CHANGE_SHARE)
    }

    fn spawn_mix(
        &self,
        params: ConnectParams,
        seed: u64,
        per_second: u64,
        key_changes: f64,
    ) -> Runner {
        let (stop, stop_rx) = watch::channel(false);
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        let tables = self.tables.clone();
        let pause = Duration::from_secs(OPS_PER_TXN as u64) / per_second.max(1) as u32;
        let mix = Mix { key_changes };
        let handle = tokio::spawn(write_loop(
            params, tables, seed, pause, mix, stop_rx, counter,
        ));
        Runner {
            stop,
            statements,
            handle,
        }
    }

    /// Every committed change as `("table|id", version * 2 + deleted)`, in commit order.
    pub fn truth(&self, pg: &Pg) -> Vec<(String, u64)> {
        pg.psql_in(
            &self.db,
            "SELECT tbl, id, version, del FROM wl_audit ORDER BY seq;",
        )
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('|').collect();
            let parse = |s: &str| -> u64 {
                s.parse()
                    .unwrap_or_else(|e| panic!("audit line {line:?}: {e}"))
            };
            assert_eq!(f.len(), 4, "audit line {line:?}");
            (
                format!("{}|{}", f[0], f[1]),
                parse(f[2]) * 2 + u64::from(f[3] == "t"),
            )
        })
        .collect()
    }

    /// The highest version handed out so far (committed or not): a record with a higher
    /// version was written after this call.
    pub fn last_version(&self, pg: &Pg) -> u64 {
        pg.psql_in(&self.db, "SELECT last_value FROM wl_version;")
            .parse()
            .unwrap_or(0)
    }
}

/// Connection parameters for the workload's database as [`SUPERUSER`] on `port`.
pub fn params(pg: &Pg, db: &str, port: u16) -> ConnectParams {
    let mut p = pg.connect_params(SUPERUSER, db);
    p.port = port;
    p.application_name = "fault-suite-workload".into();
    p
}

/// A running workload.
pub struct Runner {
    stop: watch::Sender<bool>,
    statements: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Runner {
    /// Statements in transactions that reported a commit (an upper bound on changes:
    /// an update of a row deleted meanwhile changes nothing).
    pub fn statements(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` statements committed.
    pub async fn wait_for(&self, n: u64) {
        while self.statements() < n && !self.handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops after the current transaction.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        if let Err(e) = self.handle.await {
            panic!("the workload task failed: {e}");
        }
    }
}

async fn write_loop(
    params: ConnectParams,
    tables: Vec<String>,
    seed: u64,
    pause: Duration,
    mix: Mix,
    mut stop: watch::Receiver<bool>,
    statements: Arc<AtomicU64>,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    // The workload's belief of which ids are live; after an uncertain commit it may be
    // wrong, which is harmless: every statement is valid whether the row exists or not.
    let mut live: Vec<Vec<bool>> = vec![vec![false; ID_SPACE as usize]; tables.len()];
    let mut client = None;
    while !*stop.borrow_and_update() {
        let Some(c) = client.as_ref() else {
            match sql_connect(&params).await {
                Ok(c) => client = Some(c),
                // The server is restarting or the path to it is cut: try again shortly.
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
            continue;
        };
        let mut sql = String::from("BEGIN;\n");
        let mut after = live.clone();
        for _ in 0..OPS_PER_TXN {
            let t = rng.random_range(0..tables.len());
            let id = rng.random_range(0..ID_SPACE);
            let table = &tables[t];
            let rows = &mut after[t];
            sql += &if !rows[id as usize] {
                rows[id as usize] = true;
                format!(
                    "INSERT INTO {table} VALUES ({id}, nextval('wl_version'), 'n') \
                     ON CONFLICT (id) DO UPDATE SET version = EXCLUDED.version;\n"
                )
            } else if rng.random_bool(0.7) {
                let to = rng.random_range(0..ID_SPACE);
                if mix.key_changes > 0.0 && !rows[to as usize] && rng.random_bool(mix.key_changes) {
                    rows[id as usize] = false;
                    rows[to as usize] = true;
                    // Valid whatever the belief: after an uncertain commit it may be wrong.
                    format!(
                        "UPDATE {table} SET id = {to}, version = nextval('wl_version') WHERE id = {id} \
                         AND NOT EXISTS (SELECT 1 FROM {table} WHERE id = {to});\n"
                    )
                } else {
                    format!("UPDATE {table} SET version = nextval('wl_version') WHERE id = {id};\n")
                }
            } else {
                rows[id as usize] = false;
                format!("DELETE FROM {table} WHERE id = {id};\n")
            };
        }
        sql += "COMMIT;";
        match c.batch_execute(&sql).await {
            Ok(()) => {
                live = after;
                statements.fetch_add(OPS_PER_TXN as u64, Ordering::Relaxed);
            }
            Err(_) => {
                client = None;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A steady rate leaves the 2-core machine room for the streamer and other tests.
        tokio::time::sleep(pause).await;
    }
}

/// The typed part of a record the verifier needs.
#[derive(serde::Deserialize)]
struct Payload {
    kind: String,
    table: String,
    data: Row,
}

#[derive(serde::Deserialize)]
struct Row {
    id: u64,
    version: u64,
}

/// What the key-change records in a stream show.
#[derive(Debug, Default)]
pub struct KeyChanges {
    /// Deletes marked `key_change` whose insert (same `commit_lsn`, next `seq`, also
    /// marked) is on the stream.
    pub paired: usize,
    /// Marked records without their other half.
    pub unpaired: usize,
    /// Key-change deletes whose id was inserted again later (a higher version).
    pub reused: usize,
}

/// Checks the key-change pairs in `records` (stream order, duplicates allowed).
pub fn key_changes<'a>(records: impl IntoIterator<Item = &'a [u8]>) -> KeyChanges {
    use std::collections::{HashMap, HashSet};
    let mut deletes = HashSet::new();
    let mut inserts = HashSet::new();
    let mut moved_away = HashSet::new();
    let mut newest: HashMap<String, u64> = HashMap::new();
    for data in records {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
            continue;
        };
        let Some((key, id)) = key_and_id(data) else {
            continue;
        };
        if id % 2 == 0 {
            let newest = newest.entry(key.clone()).or_default();
            *newest = (*newest).max(id);
        }
        if v["key_change"] != serde_json::Value::Bool(true) {
            continue;
        }
        let (Some(commit), Some(seq)) = (v["commit_lsn"].as_str(), v["seq"].as_u64()) else {
            continue;
        };
        if id % 2 == 1 {
            deletes.insert((commit.to_string(), seq));
            moved_away.insert((key, id));
        } else {
            inserts.insert((commit.to_string(), seq));
        }
    }
    let paired = deletes
        .iter()
        .filter(|(commit, seq)| inserts.contains(&(commit.clone(), seq + 1)))
        .count();
    KeyChanges {
        paired,
        unpaired: deletes.len() + inserts.len() - 2 * paired,
        reused: moved_away
            .iter()
            .filter(|(key, id)| newest.get(key).is_some_and(|n| n > id))
            .count(),
    }
}

/// `("table|id", version * 2 + deleted)` of a record, as in [`Workload::truth`].
pub fn key_and_id(data: &[u8]) -> Option<(String, u64)> {
    let p: Payload = serde_json::from_slice(data).ok()?;
    let deleted = match p.kind.as_str() {
        "delete" => 1,
        "insert" | "update" => 0,
        _ => return None,
    };
    Some((
        format!("{}|{}", p.table, p.data.id),
        p.data.version * 2 + deleted,
    ))
}
