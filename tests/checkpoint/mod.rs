//! Checkpoints in SSM (moto) beside real PostgreSQL + wal2json and kinesalite: what
//! is written and when, the startup rules, and an SSM outage during streaming.
//! Each test owns its database, slot, stream and parameter names.
//!
//! Shared here: the fixture (database, stream, parameter, config) and the waits; the
//! tests sit in one submodule per theme.

mod restart;
mod startup;
mod writes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::checkpoint::{ssm_client, Checkpoint, CheckpointStore, SsmStore};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::source;

use crate::support::case::{wait_state, wraps_case, Case};
use crate::support::kinesis::{self, kinesalite};
use crate::support::moto::Moto;
use crate::support::pg::{self, SUPERUSER};

/// One slot, one database, one table `t`, one stream, one parameter.
struct Fixture {
    case: Case<'static>,
    parameter: String,
}

wraps_case!(Fixture);

impl Fixture {
    async fn new(prefix: &str) -> Fixture {
        let case =
            Case::new(pg::shared(), prefix).with_sql("CREATE TABLE t (id int PRIMARY KEY, v text)");
        case.kinesalite_stream(1).await;
        let parameter = format!("/pg-cdc-tests/{}/checkpoint", case.slot);
        Fixture { case, parameter }
    }

    fn config(&self, extra: &str) -> Config {
        let parameter = format!("checkpoint_parameter: {}", self.parameter);
        let slot = self.slot_yaml(
            self.pg.port,
            "{add-tables: 'public.t'}",
            &["status_interval_secs: 1", &parameter],
        );
        let yaml = format!("{slot}{extra}");
        let path = self.write_config(&yaml);
        Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"))
    }

    fn start(&self, extra: &str, store: &Arc<SsmStore>) -> Pipeline {
        self.start_with(extra, store.clone())
    }

    fn start_with(&self, extra: &str, store: Arc<dyn CheckpointStore>) -> Pipeline {
        Pipeline::start_with_checkpoints(
            &self.config(extra),
            &RunEnv {
                aws: kinesalite().sdk_config(),
            },
            Some(store),
        )
    }

    fn insert(&self, from: u32, to: u32) {
        pg::shared().execute(
            &self.db,
            &format!("INSERT INTO t SELECT g, 'v' || g FROM generate_series({from}, {to}) g"),
        );
    }

    async fn slot_lsn(&self) -> Option<Lsn> {
        let pg = pg::shared();
        let client = source::sql_connect(&pg.connect_params(SUPERUSER, &self.db))
            .await
            .unwrap();
        source::slot_info(&client, &self.slot)
            .await
            .unwrap()
            .map(|i| i.confirmed_flush_lsn.unwrap_or_default())
    }

    /// Waits for `n` records and returns the highest commit LSN among them.
    async fn delivered(&self, n: usize) -> Lsn {
        let records = kinesis::read_until(
            &kinesalite().client(),
            &self.stream,
            n,
            Duration::from_secs(60),
        )
        .await;
        assert!(
            records.len() >= n,
            "{} of {n} records arrived",
            records.len()
        );
        records
            .iter()
            .filter_map(|r| r.json().ok()?["commit_lsn"].as_str()?.parse().ok())
            .max()
            .unwrap()
    }

    fn drop_slot(&self) {
        let _ = pg::shared().try_psql_in(
            &self.db,
            &format!("SELECT pg_drop_replication_slot('{}')", self.slot),
        );
    }
}

fn ssm_store(m: &Moto) -> Arc<SsmStore> {
    Arc::new(SsmStore::new(ssm_client(&m.sdk_config(), None)))
}

/// How many times the parameter was written (SSM versions count overwrites).
async fn version(m: &Moto, parameter: &str) -> Option<i64> {
    let client = ssm_client(&m.sdk_config(), None);
    let out = client.get_parameter().name(parameter).send().await.ok()?;
    out.parameter().map(|p| p.version())
}

/// How long a slot may take to reach the state a test waits for.
const STATE_TIMEOUT: Duration = Duration::from_secs(60);

async fn wait_streaming(p: &Pipeline) {
    let state = wait_state(&p.slots[0], STATE_TIMEOUT, |s| *s == SlotState::Streaming).await;
    assert_eq!(state, SlotState::Streaming);
}

/// Polls until the checkpoint reaches `at`, checking on every read that it never
/// exceeds what the slot has confirmed and never moves backwards.
async fn wait_checkpoint(f: &Fixture, store: &SsmStore, at: Lsn) -> Checkpoint {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut seen = Lsn::ZERO;
    loop {
        if let Ok(Some(cp)) = store.read(&f.parameter).await {
            let lsn = cp.lsn().unwrap();
            let slot = f.slot_lsn().await.unwrap_or_default();
            assert!(
                lsn <= slot,
                "checkpoint {lsn} is ahead of the slot's confirmed_flush_lsn {slot}"
            );
            assert!(lsn >= seen, "checkpoint moved backwards: {seen} then {lsn}");
            seen = lsn;
            if lsn >= at {
                return cp;
            }
        }
        assert!(
            Instant::now() < deadline,
            "checkpoint stuck at {seen}, waiting for {at}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
