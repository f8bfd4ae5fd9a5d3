//! The `configs.yml` format as serde structs: this file is the user's reference.
//!
//! Owns the key names and their documentation (meaning, default, example). It never
//! validates values or applies defaults: `slot` does, with the named limits in
//! `config`. Values are kept as located [`Node`]s so every later message can point
//! at the line and column the user wrote.
//!
//! ```yaml
//! shutdown_timeout_secs: 25          # optional
//!
//! databases:                         # optional: connection settings to reuse
//!   - my_database: &my_db            # list item = one-key map; `&my_db` is the anchor
//!       host: ${PGHOST:-localhost}
//!       user: postgres
//!       password: ${PGPASSWORD}
//!       db_name: my_db
//!
//! replication_slots:                 # required, at least one
//!   - my_slot:                       # the PostgreSQL replication slot's name
//!       <<: *my_db                   # merge the database; keys below override it
//!       options: {'include-timestamp': True, 'add-tables': 'public.*'}
//!       kns_stream: my-kinesis-stream
//! ```

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::yaml::Node;

/// A value as written, with where it was written (and, for merged or aliased values,
/// where it was defined).
pub(super) type Value = Spanned<Node>;

/// The top level of `configs.yml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConfigFile {
    /// Optional list of reusable connection settings. Each item is a one-key map from
    /// a name you choose to a [`DatabaseFile`], usually carrying a YAML anchor so
    /// slots can merge it. Example: `- my_database: &my_db {host: db, user: app, db_name: shop}`.
    #[allow(
        dead_code,
        reason = "read so deny_unknown_fields checks it; slots get it via `<<:`"
    )]
    pub databases: Option<Vec<BTreeMap<String, DatabaseFile>>>,

    /// Required, non-empty list of replication slots to stream. Each item is a one-key
    /// map from the slot's name to a [`SlotFile`]; slots run in parallel, in this order.
    /// The name must be a valid PostgreSQL replication-slot name: lower-case letters,
    /// digits and `_`, at most 63 characters, unique in the file. Example:
    /// `- orders_slot: {<<: *my_db, kns_stream: orders}`.
    pub replication_slots: Option<Vec<BTreeMap<String, SlotFile>>>,

    /// Seconds that shutdown (SIGTERM/SIGINT) may spend flushing batches already read
    /// before giving up; unflushed changes are re-read from the slot on the next start.
    /// Default 25 (inside ECS's 30 s stop timeout). Range 1..=3600. Example: `shutdown_timeout_secs: 50`.
    pub shutdown_timeout_secs: Option<Value>,
}

/// Connection settings shared by slots through `<<: *anchor`. Every key is optional
/// here; the merged slot must end up with `host`, `user` and `db_name`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code, reason = "slots receive these values through `<<:` merges")]
pub(super) struct DatabaseFile {
    /// See [`SlotFile::host`].
    pub host: Option<Value>,
    /// See [`SlotFile::port`].
    pub port: Option<Value>,
    /// See [`SlotFile::user`].
    pub user: Option<Value>,
    /// See [`SlotFile::password`].
    pub password: Option<Value>,
    /// See [`SlotFile::db_name`].
    pub db_name: Option<Value>,
}

/// One replication slot. All keys are flat so that `<<: *anchor` can supply any of
/// them and the slot can override any of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlotFile {
    /// Required. PostgreSQL host name or IP address. `${ENV}` expanded.
    /// Example: `host: ${PGHOST:-127.0.0.1}`.
    pub host: Option<Value>,

    /// PostgreSQL port, 1..=65535. Default 5432. `${ENV}` expanded, so text such as
    /// `port: ${PGPORT:-5432}` is accepted. Example: `port: 6432`.
    pub port: Option<Value>,

    /// Required. PostgreSQL user; it needs the REPLICATION attribute (or rds_replication
    /// on RDS). `${ENV}` expanded. Example: `user: cdc`.
    pub user: Option<Value>,

    /// Optional password; omit it (or let it expand to empty) for trust or `.pgpass`-free
    /// setups without a password. Never logged. `${ENV}` expanded; quote a literal value
    /// that starts with `*`, `&` or `!`. Example: `password: ${PGPASSWORD}`.
    pub password: Option<Value>,

    /// Required. Database the slot decodes. `${ENV}` expanded. Example: `db_name: shop`.
    pub db_name: Option<Value>,

    /// wal2json 2.5 options, passed to the plugin as given, in file order; booleans
    /// are sent as `true`/`false`. Unknown option names and `format-version` other than
    /// 1 or 2 are rejected. Default: none (the service's own defaults apply).
    /// Example: `options: {'include-timestamp': True, 'add-tables': 'public.orders'}`.
    pub options: Option<Value>,

    /// Required. Name of the Kinesis data stream to write to: 1–128 of `[a-zA-Z0-9_.-]`.
    /// `${ENV}` expanded. Example: `kns_stream: cdc-orders`.
    pub kns_stream: Option<Value>,

    /// AWS region of the stream. Default: the AWS default chain (`AWS_REGION`, profile,
    /// instance metadata). `${ENV}` expanded. Example: `region: eu-west-1`.
    pub region: Option<Value>,

    /// How each record's Kinesis partition key is chosen (this decides per-key order):
    /// `primary_key` (default: table plus primary-key values, falling back to the table
    /// for keyless tables), `table`, `{columns: [a, b]}` (table plus these columns'
    /// values) or `{fixed: "x"}` (one key: total order, one shard's throughput).
    /// Example: `partition_key: {columns: [tenant_id]}`.
    pub partition_key: Option<Value>,

    /// Records per PutRecords request, 1..=500 (the Kinesis maximum). Default 500.
    /// Example: `batch_max_records: 100`.
    pub batch_max_records: Option<Value>,

    /// Bytes per PutRecords request (data plus partition keys), 1..=5242880 (5 MiB,
    /// the Kinesis maximum). Default 5242880. Example: `batch_max_bytes: 1048576`.
    pub batch_max_bytes: Option<Value>,

    /// Largest single record accepted, in bytes, at most `batch_max_bytes`. Default:
    /// unset, which asks the stream for its limit and falls back to 1048576 (1 MiB).
    /// Example: `max_record_bytes: 1048576`.
    pub max_record_bytes: Option<Value>,

    /// PutRecords requests in flight at once for this slot, 1..=64. Default 4.
    /// Example: `max_in_flight: 8`.
    pub max_in_flight: Option<Value>,

    /// Milliseconds a partly filled batch may wait for more records, 0..=60000.
    /// Default 5. Example: `linger_ms: 50`.
    pub linger_ms: Option<Value>,

    /// Changes buffered between the replication reader and the Kinesis sink; when full,
    /// reading pauses (backpressure). 1..=1048576. Default 8192. Example: `queue_capacity: 16384`.
    pub queue_capacity: Option<Value>,

    /// Seconds between standby status updates to PostgreSQL, 1..=3600; keep it well
    /// under the server's `wal_sender_timeout` (60 s by default). Default 10.
    /// Example: `status_interval_secs: 5`.
    pub status_interval_secs: Option<Value>,

    /// Create the slot with the wal2json plugin when it does not exist. Default `true`;
    /// with `false` a missing slot is an error. Example: `create_slot: false`.
    pub create_slot: Option<Value>,
}
