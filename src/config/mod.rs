//! `configs.yml` → a validated [`Config`].
//!
//! Owns the file format (seed-compatible with the original Python tool: `databases`
//! anchors, `replication_slots` with `<<:` merge keys, `options` passed to wal2json),
//! defaults and limits (the named constants in `limits`), `${ENV_VAR}` expansion and
//! validation. Everything the user can get wrong is reported here, before anything
//! connects, as one message naming the file, line:column, slot and key, and the fix.
//! It never connects to anything and never prints a password.
//!
//! Loading runs in three steps: the YAML is parsed into a located tree (`yaml`), the
//! tree's shape and key names are checked (`validate`), then the documented serde
//! structs (`file`) are read and turned into [`SlotConfig`]s (`slot`).

mod auth;
mod checkpoint_keys;
mod delivery_keys;
mod env;
mod error;
mod file;
mod format_keys;
mod libpq_env;
mod limits;
mod ops_keys;
mod oversize_keys;
mod shape_keys;
mod slot;
mod snapshot_keys;
mod suggest;
mod table_glob;
mod tables_filters;
mod tables_keys;
mod tls;
mod tls_keys;
mod validate;
mod value;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use auth::{AuthMethod, ChannelBinding, RequireAuth};
pub use delivery_keys::{
    Aggregation, WireFormat, DEFAULT_MEMORY_BUDGET_BYTES, DEFAULT_SHARD_BYTES_PER_SEC,
    DEFAULT_SHARD_RECORDS_PER_SEC, MAX_MEMORY_BUDGET_BYTES,
};
pub use error::ConfigError;
use error::Source;
pub use format_keys::{option_value, pg_bool, FormatConfig, RecordFormat, Timestamps};
pub use limits::*;
pub use ops_keys::{OpsConfig, DEFAULT_METRICS_NAMESPACE};
pub use oversize_keys::{OversizeConfig, OversizeMode, DEFAULT_OVERSIZE_PREFIX};
pub use shape_keys::{ShapeConfig, UnchangedToast, DEFAULT_UNCHANGED_TOAST_PLACEHOLDER};
pub use snapshot_keys::{Snapshot, SnapshotConfig, DEFAULT_SNAPSHOT_CHUNK_ROWS};
pub use table_glob::{NameGlob, TableGlob};
pub use tables_keys::{
    MaskMethod, SaltSecret, TableEntry, TableOversize, TablesConfig, TABLE_ENTRY_KEYS,
};
pub use tls::{is_local_host, SslMode};
pub use tls_keys::iam_peer_problem;

/// A secret string (password). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself. Call only where it is sent to the server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How each record's Kinesis partition key is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PartitionKey {
    /// `schema.table` plus the primary-key (or replica-identity) values, so that all
    /// changes to one row land on one shard, in order. Tables without a key fall
    /// back to `schema.table`. The default.
    #[default]
    PrimaryKey,
    /// `schema.table`: every change to a table on one shard.
    Table,
    /// `schema.table` plus the values of these columns.
    Columns(Vec<String>),
    /// One fixed key: the whole slot on one shard (total order, one shard's throughput).
    Fixed(String),
}

/// Batching and concurrency limits for the Kinesis sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// Records per PutRecords request (Kinesis allows at most 500).
    pub max_records: usize,
    /// Bytes per PutRecords request, data plus partition keys (Kinesis: 5 MiB).
    pub max_bytes: usize,
    /// Largest single record accepted, when the stream does not say (Kinesis: 1 MiB).
    pub max_record_bytes: Option<usize>,
    /// PutRecords requests in flight at once for this slot.
    pub max_in_flight: usize,
    /// How long a partly filled batch may wait for more records, in milliseconds.
    pub linger_ms: u64,
    /// Whether records are packed into KPL aggregates.
    pub aggregation: Aggregation,
    /// How `PutRecords` requests are encoded.
    pub wire_format: WireFormat,
    /// Records per second one shard takes (0: do not pace).
    pub shard_records_per_sec: u64,
    /// Bytes per second one shard takes (0: do not pace).
    pub shard_bytes_per_sec: u64,
    /// This slot's share of `memory_budget_bytes`: records held by the sink until
    /// accepted, plus request bodies in flight.
    pub buffer_bytes: usize,
}

/// One replication slot, with its database connection merged in.
#[derive(Debug, Clone, PartialEq)]
pub struct SlotConfig {
    /// The replication slot's name (a valid PostgreSQL slot name).
    pub name: String,
    /// Empty when `secret` supplies it (also `user`, `db_name`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub db_name: String,
    /// wal2json options as the user gave them, values rendered as text
    /// (`true`/`false` for booleans), in file order; then the `add-tables` /
    /// `filter-tables` derived from `tables:` (wal2json applies the last).
    pub options: Vec<(String, String)>,
    /// The Kinesis stream's name.
    pub kns_stream: String,
    /// AWS region for Kinesis; `None` uses the default chain (AWS_REGION, profile...).
    pub region: Option<String>,
    pub partition_key: PartitionKey,
    pub batch: BatchConfig,
    /// Changes buffered between the replication reader and the sink (backpressure bound).
    pub queue_capacity: usize,
    /// Standby status update interval in seconds (well inside `wal_sender_timeout`).
    pub status_interval_secs: u64,
    /// Create the slot with wal2json when it does not exist.
    pub create_slot: bool,
    /// `sslmode` as written; `None` = the host's default ([`SslMode::resolve`]).
    pub sslmode: Option<SslMode>,
    /// CA bundle (PEM) to verify the server against; `None` = the system trust store.
    pub sslrootcert: Option<PathBuf>,
    /// Secrets Manager secret (ARN or name) with the credentials. When set, `host`,
    /// `user` and `db_name` may be empty: the secret fills them.
    pub secret: Option<String>,
    /// Authenticate with an RDS IAM token instead of a password.
    pub iam_auth: bool,
    /// Connect to this address instead of resolving `host` (which still names the
    /// server for certificates, IAM tokens and messages).
    pub hostaddr: Option<std::net::IpAddr>,
    /// Whether the SCRAM login must, may or must not be bound to the TLS certificate.
    pub channel_binding: ChannelBinding,
    /// The authentication methods the server may ask for.
    pub require_auth: RequireAuth,
    /// Send IAM tokens even to a server whose certificate is not verified for its name.
    pub iam_token_to_unverified_server: bool,
    /// Durable checkpoints in SSM Parameter Store.
    pub checkpoint: CheckpointConfig,
    /// Seconds between heartbeat messages; `None` = no heartbeats.
    pub heartbeat_interval_secs: Option<u64>,
    /// Initial snapshot and backfill chunking.
    pub snapshot: SnapshotConfig,
    /// Records larger than the stream takes: stop, or claim checks via S3.
    pub oversize: OversizeConfig,
    /// The record envelope and value options (`record_format`, `numeric_as_string`,
    /// `json_as_object`, `timestamps`).
    pub format: FormatConfig,
    /// Per-table rules (`tables:`) and `mask_salt`; empty = every table as before.
    pub tables: TablesConfig,
    /// Unchanged TOAST columns and partition roots (`shape_keys`).
    pub shape: ShapeConfig,
}

impl SlotConfig {
    /// Every stream this slot writes to: `kns_stream` first, then the streams its
    /// `tables:` entries route to, each once. A record's stream index points here.
    pub fn streams(&self) -> Vec<String> {
        let mut out = vec![self.kns_stream.clone()];
        out.extend(
            self.tables
                .extra_streams(&self.kns_stream)
                .into_iter()
                .map(str::to_string),
        );
        out
    }
}

/// Where and how often a slot's confirmed LSN is checkpointed (see `checkpoint`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointConfig {
    pub enabled: bool,
    /// SSM parameter name.
    pub parameter: String,
    /// At most one write per this many seconds, plus one on shutdown.
    pub interval_secs: u64,
    /// Start despite a checkpoint gap (logged at error level, counted).
    pub accept_gap: bool,
    /// And then backfill every streamed table (`accept_checkpoint_gap: backfill`).
    pub backfill_gap: bool,
}

/// The whole validated file.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (for messages).
    pub path: PathBuf,
    pub slots: Vec<SlotConfig>,
    /// How long shutdown may spend flushing in-flight batches, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Longest wait between tries to start a stopped slot again; 0 = never.
    pub stopped_slot_retry_secs: u64,
    /// Bytes all slots' sinks may hold together (`memory_budget_bytes`), split evenly.
    pub memory_budget_bytes: u64,
    /// Metrics, HTTP endpoints and WAL-safety settings.
    pub ops: OpsConfig,
}

impl Config {
    /// Reads, parses and validates the file at `path`, expanding `${VAR}` from the
    /// process environment.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_text(path, &text, &|name| std::env::var(name).ok())
    }

    /// [`Config::load`] on text already read; `lookup` stands in for the environment.
    pub fn from_text(
        path: &Path,
        text: &str,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let src = Source { path, text };
        let tree = yaml::parse_tree(&src)?;
        let sites = validate::check_tree(&src, tree.as_ref())?;
        let typed: file::ConfigFile = yaml::parse_typed(&src)?;
        let ops = ops_keys::build(&src, &typed, lookup)?;
        let raw_slots = typed.replication_slots.unwrap_or_default();
        let mut slots = Vec::with_capacity(sites.len());
        for (site, raw) in sites.iter().zip(raw_slots) {
            // The tree check guaranteed exactly one entry per list item.
            for (_, raw_slot) in raw {
                slots.push(slot::build(&src, site, raw_slot, lookup)?);
            }
        }
        let budget = delivery_keys::memory_budget(&src, &typed.memory_budget_bytes)?;
        let share = delivery_keys::slot_share(budget, slots.len());
        for slot in &mut slots {
            slot.batch.buffer_bytes = share;
        }
        let shutdown_timeout_secs = match &typed.shutdown_timeout_secs {
            None => DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            Some(v) => value::number(
                &src,
                v,
                "top level, key `shutdown_timeout_secs`",
                1,
                MAX_SHUTDOWN_TIMEOUT_SECS,
            )?,
        };
        let stopped_slot_retry_secs = match &typed.stopped_slot_retry_secs {
            None => DEFAULT_STOPPED_SLOT_RETRY_SECS,
            Some(v) => value::number(
                &src,
                v,
                "top level, key `stopped_slot_retry_secs`",
                0,
                MAX_STOPPED_SLOT_RETRY_SECS,
            )?,
        };
        Ok(Config {
            path: path.to_path_buf(),
            slots,
            shutdown_timeout_secs,
            stopped_slot_retry_secs,
            memory_budget_bytes: budget,
            ops,
        })
    }

    /// What the slots may hold together: each slot's share of `memory_budget_bytes`,
    /// summed. More than the budget when so many slots split it that each gets the
    /// floor ([`delivery_keys::MIN_SLOT_BUFFER_BYTES`]: a full request of the largest
    /// size and its records).
    pub fn records_bound_bytes(&self) -> u64 {
        self.slots.iter().map(|s| s.batch.buffer_bytes as u64).sum()
    }

    /// A warning for the log when [`Config::records_bound_bytes`] is over the budget
    /// (then every slot has the floor): the figure to size the process's memory by,
    /// and how to make the budget say it.
    pub fn memory_floor_warning(&self) -> Option<String> {
        let held = self.records_bound_bytes();
        // Whole MiB: the floor and the request are, and `held` is slots x floor.
        let mib = |bytes: usize| bytes >> 20;
        (held > self.memory_budget_bytes).then(|| {
            format!(
                "config {}: {} slots hold up to {} MiB of records each (the least a slot gets: a full {} MiB request and its records), so together up to {} MiB, more than memory_budget_bytes ({} bytes): size the process's memory for {held} bytes of records (about twice that in RSS) and set memory_budget_bytes: {held} to say so, or run fewer slots per process",
                self.path.display(),
                self.slots.len(),
                mib(delivery_keys::MIN_SLOT_BUFFER_BYTES),
                mib(DEFAULT_BATCH_MAX_BYTES),
                held >> 20,
                self.memory_budget_bytes,
            )
        })
    }
}

#[cfg(test)]
mod tests;
