//! `configs.yml` → a validated [`Config`].
//!
//! Owns the file format (seed-compatible with the original Python tool: `databases`
//! anchors, `replication_slots` with `<<:` merge keys, `options` passed to wal2json),
//! defaults and limits (the named constants below), `${ENV_VAR}` expansion and
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
mod file;
mod format_keys;
mod libpq_env;
mod ops_keys;
mod oversize_keys;
mod shape_keys;
mod slot;
mod snapshot_keys;
mod table_glob;
mod tables_filters;
mod tables_keys;
mod tls;
mod tls_keys;
mod validate;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

pub use auth::{AuthMethod, ChannelBinding, RequireAuth};
pub use delivery_keys::{
    Aggregation, DEFAULT_MEMORY_BUDGET_BYTES, DEFAULT_SHARD_BYTES_PER_SEC,
    DEFAULT_SHARD_RECORDS_PER_SEC,
};
pub use format_keys::{option_value, pg_bool, FormatConfig, RecordFormat, Timestamps};
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

/// PostgreSQL port when a slot gives none.
pub const DEFAULT_PORT: u16 = 5432;
/// Kinesis PutRecords accepts at most 500 records per request.
pub const KINESIS_MAX_RECORDS_PER_REQUEST: usize = 500;
/// Kinesis PutRecords accepts at most 10 MiB per request (data plus partition keys).
pub const KINESIS_MAX_BYTES_PER_REQUEST: usize = 10 * 1024 * 1024;
/// Largest record to assume when `max_record_bytes` is unset and the stream does not
/// say (the classic Kinesis per-record limit).
pub const KINESIS_DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis partition keys are 1..=256 characters, as it counts them: UTF-8 bytes
/// are the safe measure (a key of 129 two-byte characters is refused).
pub const KINESIS_MAX_PARTITION_KEY_BYTES: usize = 256;
/// Kinesis stream names are 1..=128 of `[a-zA-Z0-9_.-]`.
pub const KINESIS_MAX_STREAM_NAME_LEN: usize = 128;
/// PostgreSQL names are at most NAMEDATALEN - 1 = 63 bytes.
pub const PG_MAX_SLOT_NAME_LEN: usize = 63;
/// `batch_max_records` default: full batches.
pub const DEFAULT_BATCH_MAX_RECORDS: usize = KINESIS_MAX_RECORDS_PER_REQUEST;
/// `batch_max_bytes` default: 5 MiB, the limit every Kinesis endpoint and emulator
/// takes (the service takes up to 10 MiB since 2025).
pub const DEFAULT_BATCH_MAX_BYTES: usize = 5 * 1024 * 1024;
/// `max_in_flight` default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 4;
/// `max_in_flight` upper bound: more requests in flight only add throttling.
pub const MAX_IN_FLIGHT_LIMIT: usize = 64;
/// `linger_ms` default.
pub const DEFAULT_LINGER_MS: u64 = 5;
/// `linger_ms` upper bound (one minute).
pub const MAX_LINGER_MS: u64 = 60_000;
/// `queue_capacity` default, in changes.
pub const DEFAULT_QUEUE_CAPACITY: usize = 8192;
/// `queue_capacity` upper bound, in changes.
pub const MAX_QUEUE_CAPACITY: usize = 1 << 20;
/// `status_interval_secs` default: well inside the default 60 s `wal_sender_timeout`.
pub const DEFAULT_STATUS_INTERVAL_SECS: u64 = 10;
/// `status_interval_secs` upper bound.
pub const MAX_STATUS_INTERVAL_SECS: u64 = 3600;
/// `create_slot` default.
pub const DEFAULT_CREATE_SLOT: bool = true;
/// `checkpoint` default: on (without SSM it only warns).
pub const DEFAULT_CHECKPOINT: bool = true;
/// `checkpoint_interval_secs` default.
pub const DEFAULT_CHECKPOINT_INTERVAL_SECS: u64 = 5;
/// `checkpoint_interval_secs` upper bound.
pub const MAX_CHECKPOINT_INTERVAL_SECS: u64 = 3600;
/// SSM parameter names are at most 1011 characters (including the leading `/`).
pub const SSM_MAX_PARAMETER_NAME_LEN: usize = 1011;
/// `shutdown_timeout_secs` default: inside ECS's default 30 s stop timeout.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 25;
/// `shutdown_timeout_secs` upper bound.
pub const MAX_SHUTDOWN_TIMEOUT_SECS: u64 = 3600;
/// `stopped_slot_retry_secs` default: a stopped slot is tried again every 5 minutes.
pub const DEFAULT_STOPPED_SLOT_RETRY_SECS: u64 = 300;
/// `stopped_slot_retry_secs` upper bound (one day).
pub const MAX_STOPPED_SLOT_RETRY_SECS: u64 = 86_400;

/// Every option wal2json 2.5 accepts (from its README and the option strings in the
/// installed `wal2json.so`). wal2json errors on unknown options only when the slot
/// starts streaming; checking here reports the typo before anything connects.
/// (`numeric-data-types-as-string` is 2.6+, so it is not here.)
pub const WAL2JSON_OPTIONS: &[&str] = &[
    "include-xids",
    "include-timestamp",
    "include-schemas",
    "include-types",
    "include-typmod",
    "include-type-oids",
    "include-domain-data-type",
    "include-column-positions",
    "include-origin",
    "include-not-null",
    "include-default",
    "include-pk",
    "pretty-print",
    "write-in-chunks",
    "include-lsn",
    "include-transaction",
    "include-unchanged-toast",
    "filter-origins",
    "filter-tables",
    "add-tables",
    "filter-msg-prefixes",
    "add-msg-prefixes",
    "format-version",
    "actions",
];

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

/// Something is wrong with the config file. The message names the file, the slot,
/// the key and, where the parser gives it, line:column, and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
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
            Some(v) => slot::number(
                &src,
                v,
                "top level, key `shutdown_timeout_secs`",
                1,
                MAX_SHUTDOWN_TIMEOUT_SECS,
            )?,
        };
        let stopped_slot_retry_secs = match &typed.stopped_slot_retry_secs {
            None => DEFAULT_STOPPED_SLOT_RETRY_SECS,
            Some(v) => slot::number(
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
}

/// The file being loaded, for messages that say where.
struct Source<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    /// `path:line:column: msg` (or `path: msg` without a known location).
    fn error(&self, at: Option<&serde_saphyr::Location>, msg: impl fmt::Display) -> ConfigError {
        let path = self.path.display();
        ConfigError::Invalid(match at {
            Some(l) if l.line() > 0 => format!("{path}:{}:{}: {msg}", l.line(), l.column()),
            _ => format!("{path}: {msg}"),
        })
    }

    /// An error about a value: points where it is used and, for a value merged in
    /// with `<<:` or aliased, also where it was written.
    fn at<T>(&self, v: &serde_saphyr::Spanned<T>, msg: impl fmt::Display) -> ConfigError {
        let (r, d) = (&v.referenced, &v.defined);
        if d.line() > 0 && (d.line(), d.column()) != (r.line(), r.column()) {
            self.error(
                Some(r),
                format!(
                    "{msg} (value written at line {}, column {})",
                    d.line(),
                    d.column()
                ),
            )
        } else {
            self.error(Some(r), msg)
        }
    }

    /// A boolean key: `default` when absent, an error naming `place` for anything
    /// but `true`/`false`. The one place every on/off key is read.
    fn flag(
        &self,
        v: &Option<serde_saphyr::Spanned<yaml::Node>>,
        place: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) => match &v.value {
                yaml::Node::Bool(b) => Ok(*b),
                other => Err(self.at(
                    v,
                    format!("{place}: must be `true` or `false`, got {}", other.show()),
                )),
            },
        }
    }
}

#[cfg(test)]
mod tests;
