//! The case builder's in-process side: the pipeline and its ops server started from a
//! YAML config in one call ([`Running`], [`streaming_in_process`]), a slot on kinesalite
//! from DDL to streaming ([`Live`]), and the small waits and reads those tests share.
//! Never starts the binary: `Streamer` in `process.rs` does that.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;
use pg_cdc_to_kinesis::checkpoint::CheckpointStore;
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::{SlotState, SlotStatus};
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use pg_cdc_to_kinesis::serve::{EmfOut, Ops};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::slot_entry;
use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::pg::{self, unique_name, Pg};

/// How long a slot may take to stream, and a read to find its records.
const STARTUP: Duration = Duration::from_secs(30);

/// A seed-style config for `slots` = (slot, database, options, stream) on the shared
/// cluster, each with `status_interval_secs: 1` and then `extra` (slot keys indented
/// by six spaces).
pub fn config_yaml(slots: &[(&str, &str, &str, &str)], extra: &str) -> String {
    let pg = pg::shared();
    let mut yaml = String::from("replication_slots:\n");
    for (slot, db, options, stream) in slots {
        yaml += &slot_entry(
            slot,
            pg.port,
            db,
            options,
            stream,
            &["status_interval_secs: 1"],
        );
        yaml += extra;
    }
    yaml
}

/// A config with one slot on `pg` streaming `public.t`, ops on a free local port,
/// metrics every second; `top` goes before the slots, `extra` (slot keys indented by
/// six spaces) after the slot's own.
pub fn ops_yaml(pg: &Pg, slot: &str, db: &str, stream: &str, top: &str, extra: &str) -> String {
    let entry = slot_entry(
        slot,
        pg.port,
        db,
        "{add-tables: 'public.t'}",
        stream,
        &["status_interval_secs: 1", "checkpoint: false"],
    );
    format!("http_listen: 127.0.0.1:0\nmetrics_interval_secs: 1\n{top}replication_slots:\n{entry}{extra}")
}

/// Writes `yaml` to a temp dir and loads it; panics with the error and the YAML.
pub fn load(yaml: &str) -> (Config, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(&path, yaml).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    (config, dir)
}

/// Polls `status` until `want(state)` or the timeout; the last state.
pub async fn wait_state(
    status: &SlotStatus,
    timeout: Duration,
    want: impl Fn(&SlotState) -> bool,
) -> SlotState {
    let deadline = Instant::now() + timeout;
    loop {
        let state = status.state();
        if want(&state) || Instant::now() > deadline {
            return state;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every slot of `pipeline` streams; panics naming the first that does not.
pub async fn wait_all_streaming(pipeline: &Pipeline) {
    for status in &pipeline.slots {
        let state = wait_state(status, STARTUP, |s| *s == SlotState::Streaming).await;
        assert_eq!(
            state,
            SlotState::Streaming,
            "slot {} did not start",
            status.slot
        );
    }
}

/// Starts the pipeline of `config` against `aws` and waits until every slot streams.
pub async fn streaming(config: &Config, aws: SdkConfig) -> Pipeline {
    let pipeline = Pipeline::start(config, &RunEnv { aws });
    wait_all_streaming(&pipeline).await;
    pipeline
}

/// Loads `yaml`, starts the pipeline against `aws` and waits until every slot streams.
pub async fn streaming_in_process(yaml: &str, aws: SdkConfig) -> (Pipeline, tempfile::TempDir) {
    let (config, dir) = load(yaml);
    (streaming(&config, aws).await, dir)
}

/// Drops `slot` from the shared cluster, ignoring errors (it may be gone already).
pub fn drop_slot(db: &str, slot: &str) {
    let _ = pg::shared().try_psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"));
}

/// The pipeline and its ops server (EMF into a [`Captured`]) running from one config.
pub struct Running {
    pub pipeline: Pipeline,
    pub ops: Ops,
    pub emf: Captured,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Loads `yaml` and starts the pipeline against `aws` and the ops server; does not
    /// wait for the slots.
    pub async fn start(yaml: &str, aws: SdkConfig) -> Running {
        Self::start_with_checkpoints(yaml, aws, None).await
    }

    /// [`Running::start`] with checkpoints in `store`.
    pub async fn start_with_checkpoints(
        yaml: &str,
        aws: SdkConfig,
        store: Option<Arc<dyn CheckpointStore>>,
    ) -> Running {
        let (config, _dir) = load(yaml);
        let pipeline = Pipeline::start_with_checkpoints(&config, &RunEnv { aws }, store);
        let emf = Captured::default();
        let ops = Ops::start_with(&config, &pipeline.slots, emf.out()).await;
        Running {
            pipeline,
            ops,
            emf,
            _dir,
        }
    }

    /// The first slot's status.
    pub fn slot(&self) -> Arc<SlotStatus> {
        self.pipeline.slots[0].clone()
    }

    /// The ops server's address.
    pub fn addr(&self) -> SocketAddr {
        self.ops.http_addr().expect("the ops server is bound")
    }

    /// Stops the pipeline and waits for it, ignoring how the slots ended.
    pub async fn stop(self) {
        self.pipeline.stop();
        let _ = self.pipeline.wait().await;
    }
}

/// A `Write` the test can read back (EMF lines).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn out(&self) -> EmfOut {
        Arc::new(Mutex::new(self.clone()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// `GET path` over a plain socket: (status code, body). Panics if the server cannot
/// be reached.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_get(addr, path)
        .await
        .unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// [`get`], with a connection error as an `Err` (a server not up yet).
pub async fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).await?;
    let code = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}

/// The address of `port` on 127.0.0.1 (a streamer's ops port).
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// One slot on the shared cluster streaming into a new kinesalite stream of two
/// shards, in process: a database with its DDL, the slot's config loaded, not started.
pub struct Live {
    pub db: String,
    pub slot: String,
    pub stream: String,
    pub config: Config,
    _dir: tempfile::TempDir,
}

impl Live {
    /// A database with `ddl` and a slot with wal2json `options` and the slot keys
    /// `extra` (one per line, indented by six spaces), streaming into a new stream.
    pub async fn new(prefix: &str, ddl: &str, options: &str, extra: &str) -> Live {
        let pg = pg::shared();
        let db = pg.create_database(&unique_name(prefix));
        pg.execute(&db, ddl);
        let slot = unique_name(prefix);
        let stream = unique_stream_name(prefix);
        kinesis::create_stream(&kinesalite().client(), &stream, 2).await;
        let (config, _dir) = load(&config_yaml(&[(&slot, &db, options, &stream)], extra));
        Live {
            db,
            slot,
            stream,
            config,
            _dir,
        }
    }

    /// Starts the pipeline against kinesalite without waiting.
    pub fn start(&self) -> Pipeline {
        Pipeline::start(
            &self.config,
            &RunEnv {
                aws: kinesalite().sdk_config(),
            },
        )
    }

    /// Starts the slot and waits until it streams.
    pub async fn streaming(&self) -> Pipeline {
        streaming(&self.config, kinesalite().sdk_config()).await
    }

    /// Reads the stream until it holds `n` records (or the read times out).
    pub async fn records(&self, n: usize) -> Vec<ReadRecord> {
        kinesis::read_until(&kinesalite().client(), &self.stream, n, STARTUP).await
    }

    /// Stops the pipeline (it must end cleanly) and drops the slot.
    pub async fn finish(&self, pipeline: Pipeline) {
        pipeline.stop();
        pipeline.wait().await.unwrap();
        drop_slot(&self.db, &self.slot);
    }
}

impl super::Case<'_> {
    /// [`ops_yaml`] for the case's slot, database and stream.
    pub fn ops_yaml(&self, top: &str, extra: &str) -> String {
        ops_yaml(self.pg, &self.slot, &self.db, &self.stream, top, extra)
    }
}
