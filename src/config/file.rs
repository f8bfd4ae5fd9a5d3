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
    /// Optional list of reusable settings. Each item is a one-key map from a name you
    /// choose to settings, usually carrying a YAML anchor so slots can merge them with
    /// `<<: *anchor`. Any slot key may appear here (connection keys, `options`,
    /// `kns_stream`, `region`, ...), as in the original tool; a key the slot writes
    /// itself overrides the merged one. Every key is optional here; the merged slot
    /// must end up with `host`, `user` and `db_name` (or a `secret`) and `kns_stream`.
    /// Example: `- my_database: &my_db {host: db, user: app, db_name: shop}`.
    #[allow(
        dead_code,
        reason = "read so deny_unknown_fields checks it; slots get it via `<<:`"
    )]
    pub databases: Option<Vec<BTreeMap<String, SlotFile>>>,

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

    /// Seconds between tries to start a slot again after it stopped on a permanent
    /// error (a missing stream, a refused role, ...), while other slots run: the wait
    /// doubles from 30 s up to this cap. `0` never tries again (the slot stays
    /// stopped until the process restarts). Range 0..=86400. Default 300.
    /// Example: `stopped_slot_retry_secs: 60`.
    pub stopped_slot_retry_secs: Option<Value>,

    /// Bytes all slots may hold in records not yet accepted by Kinesis (plus request
    /// bodies in flight), split evenly between the slots, at least 10 MiB each.
    /// Default 67108864 (64 MiB). Example: `memory_budget_bytes: 268435456`.
    pub memory_budget_bytes: Option<Value>,

    /// CloudWatch namespace of the metrics written as Embedded Metric Format lines on
    /// stdout: 1..=255 printable ASCII characters. Default `PgCdcToKinesis`.
    /// Example: `metrics_namespace: Prod/Cdc`.
    pub metrics_namespace: Option<Value>,

    /// Seconds between metric lines (one per slot), 1..=3600. Default 60.
    /// Example: `metrics_interval_secs: 10`.
    pub metrics_interval_secs: Option<Value>,

    /// Write the metrics as Embedded Metric Format lines on stdout. Default `true`;
    /// `GET /metrics` (Prometheus) works either way. Example: `metrics_emf: false`.
    pub metrics_emf: Option<Value>,

    /// IP address and port of the HTTP endpoints `/healthz`, `/readyz` and `/metrics`.
    /// Default `0.0.0.0:8080`; port 0 picks a free port (logged). `${ENV}` expanded.
    /// Example: `http_listen: 127.0.0.1:9090`.
    pub http_listen: Option<Value>,

    /// Seconds a slot may spend reconnecting (retrying) before `/readyz` answers 503,
    /// 0..=86400. Default 120. Example: `ready_retry_budget_secs: 300`.
    pub ready_retry_budget_secs: Option<Value>,

    /// Warn when a slot's replication lag (server WAL position minus its confirmed
    /// position) passes this many bytes, 1..=2^50. Default 1073741824 (1 GiB).
    /// Example: `wal_lag_warn_bytes: 536870912`.
    pub wal_lag_warn_bytes: Option<Value>,
}

/// One replication slot. All keys are flat so that `<<: *anchor` can supply any of
/// them and the slot can override any of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SlotFile {
    /// Required (unless `secret` or `PGHOST` supplies it). PostgreSQL host name or IP address, or a
    /// Unix-socket directory (starting with `/`). `${ENV}` expanded.
    /// Example: `host: ${PGHOST:-127.0.0.1}`.
    pub host: Option<Value>,

    /// PostgreSQL port, 1..=65535. Default `PGPORT`, else 5432. `${ENV}` expanded, so text such as
    /// `port: ${PGPORT:-5432}` is accepted. Example: `port: 6432`.
    pub port: Option<Value>,

    /// Required (unless `secret` or `PGUSER` supplies it). PostgreSQL user; it needs the REPLICATION
    /// attribute (or rds_replication on RDS). `${ENV}` expanded. Example: `user: cdc`.
    pub user: Option<Value>,

    /// Optional password; omitted, it is `PGPASSWORD`, else the password file's
    /// (`PGPASSFILE` or `~/.pgpass`), as libpq does; empty (`''`) means no password
    /// (trust). Never logged. `${ENV}` expanded (`$${` for a literal
    /// `${`); quote a literal value that starts with `*`, `&` or `!`. An unquoted
    /// number keeps its text as written (`0123`). Example: `password: ${PGPASSWORD}`.
    pub password: Option<Value>,

    /// Required (unless `secret` or `PGDATABASE` supplies it). Database the slot decodes. `${ENV}` expanded.
    /// Example: `db_name: shop`.
    pub db_name: Option<Value>,

    /// wal2json 2.5 options, passed to the plugin as given, in file order; `${ENV}` is
    /// expanded in values; booleans are sent as `true`/`false`. Unknown option names and `format-version` other than
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

    /// Bytes per PutRecords request (data plus partition keys), 1..=10485760 (10 MiB,
    /// the Kinesis maximum). Default 5242880. Example: `batch_max_bytes: 10485760`.
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

    /// TLS to PostgreSQL (replication and SQL connections), with libpq's meaning:
    /// `disable` (never), `prefer` (TLS if the server offers it, certificate not
    /// checked), `require` (always TLS; certificate checked against `sslrootcert` only
    /// if one is given), `verify-ca` (always TLS, certificate chain checked, host name
    /// not), `verify-full` (chain and host name checked). Default `PGSSLMODE`, else `verify-full`, or
    /// `prefer` for loopback hosts (127.0.0.0/8, ::1, `localhost`) and Unix sockets.
    /// Example: `sslmode: verify-full`.
    pub sslmode: Option<Value>,

    /// PEM file of CA certificates to verify the server against, e.g. the RDS global
    /// bundle (`/etc/ssl/certs/rds-global-bundle.pem` in the container image). Default:
    /// `PGSSLROOTCERT`, else the system trust store. `${ENV}` expanded. Example: `sslrootcert: /etc/ssl/certs/rds-global-bundle.pem`.
    pub sslrootcert: Option<Value>,

    /// AWS Secrets Manager secret (ARN or name) holding the credentials. An RDS-style
    /// JSON secret (`username`, `password`, `host`, `port`, `dbname`) fills the keys this
    /// slot leaves out, so `host`, `user` and `db_name` become optional; a plain-text
    /// secret is the password. The RDS-managed secret (`rds!db-...`) holds only
    /// `username` and `password`: give `host` and `db_name` here. Fetched again when authentication fails (rotation).
    /// `${ENV}` expanded. Example: `secret: prod/orders-db/cdc`.
    pub secret: Option<Value>,

    /// Authenticate with an RDS IAM token (`rds-db:connect`) instead of a password,
    /// signed with the service's AWS credentials and renewed before its 15 minutes
    /// run out. Needs no `password` and a server verified by name: `sslmode:
    /// verify-full` (the default away from loopback), plus `sslrootcert` on a loopback
    /// address (a tunnel: see `hostaddr`), unless `iam_token_to_unverified_server` is
    /// set. Default `false`. Example: `iam_auth: true`.
    pub iam_auth: Option<Value>,

    /// IP address to connect to instead of resolving `host` (libpq's meaning): `host`
    /// is still the name the certificate must carry (`verify-full`), the name the IAM
    /// token is signed for and the name in messages. For a tunnel or port forward:
    /// `host` is the database's real name, `hostaddr` the tunnel's local address.
    /// `${ENV}` expanded. Example: `hostaddr: 127.0.0.1`.
    pub hostaddr: Option<Value>,

    /// Bind the SCRAM login to the server's TLS certificate (libpq's meaning):
    /// `disable` (never), `prefer` (when TLS is on and the server offers
    /// SCRAM-SHA-256-PLUS), `require` (always: password, md5, trust and unbound SCRAM
    /// logins are refused; needs TLS). Default `prefer`. Example: `channel_binding: require`.
    pub channel_binding: Option<Value>,

    /// The authentication methods the server may ask for (libpq's `require_auth`): a
    /// comma-separated list of `password`, `md5`, `scram-sha-256` and `none` (trust),
    /// or the same names each with `!` to refuse them. The password never goes out by
    /// a refused method. Default: any. Example: `require_auth: '!password,!md5'`.
    pub require_auth: Option<Value>,

    /// With `iam_auth`, send the token even though the server's certificate is not
    /// verified for its host name (`sslmode` other than `verify-full`, or a loopback
    /// address without `sslrootcert`). Anyone who can sit on that path can then take
    /// the token and log in as the user for up to 15 minutes. Default `false`: such a
    /// slot is refused at load. Example: `iam_token_to_unverified_server: true`.
    pub iam_token_to_unverified_server: Option<Value>,

    /// Write the slot's confirmed LSN to an SSM parameter (a durable checkpoint that
    /// reveals a lost or re-created slot at startup). Default `true`; if SSM is not
    /// reachable the service only warns and keeps streaming. Example: `checkpoint: false`.
    pub checkpoint: Option<Value>,

    /// SSM parameter name for the checkpoint: starts with `/`, then letters, digits and
    /// `_ . - /`, at most 1011 characters. Default `/pg-cdc-to-kinesis/<slot>/checkpoint`.
    /// `${ENV}` expanded. Example: `checkpoint_parameter: /prod/cdc/orders/checkpoint`.
    pub checkpoint_parameter: Option<Value>,

    /// At most one checkpoint write per this many seconds (plus one on shutdown),
    /// 1..=3600. Default 5. Example: `checkpoint_interval_secs: 30`.
    pub checkpoint_interval_secs: Option<Value>,

    /// Start even when the checkpoint shows a gap (the slot is missing, or was advanced
    /// past the final checkpoint by something else), logging it at error level.
    /// Default `false`: such a slot refuses to start. `true` after backfilling by other
    /// means; `backfill` also backfills every streamed table once it starts.
    /// Example: `accept_checkpoint_gap: backfill`.
    pub accept_checkpoint_gap: Option<Value>,

    /// Seconds between heartbeats: a non-transactional logical message
    /// (`pg_logical_emit_message`, prefix `pg-cdc-to-kinesis-heartbeat`) written into
    /// `db_name`, so the slot advances while its tables are idle and other databases
    /// write WAL. Never put on the stream. 1..=86400; default: no heartbeats. The user
    /// needs EXECUTE on `pg_logical_emit_message`. Example: `heartbeat_interval_secs: 60`.
    pub heartbeat_interval_secs: Option<Value>,

    /// `kpl` packs the row changes of one shard into KPL aggregated records (many
    /// changes per Kinesis record: a hot key or table moves thousands of rows a second
    /// in order); consumers de-aggregate with the KCL or the kinesis-aggregation
    /// libraries. Default `none`. Example: `aggregation: kpl`.
    pub aggregation: Option<Value>,

    /// How `PutRecords` requests are encoded: `cbor` (the default, as the AWS SDK for
    /// Java sends them: each record's data as bytes) or `json` (data in base64, a third
    /// more bytes to send and sign), for an endpoint that only speaks JSON.
    /// Example: `wire_format: json`.
    pub wire_format: Option<Value>,

    /// Records per second the streamer sends to one shard, 0..=4294967295 (0: no
    /// pacing). Default 1000, a provisioned shard's limit. Example: `shard_records_per_sec: 1000`.
    pub shard_records_per_sec: Option<Value>,

    /// Bytes per second the streamer sends to one shard, 0..=4294967295 (0: no
    /// pacing). Default 1048576, a provisioned shard's limit. Example: `shard_bytes_per_sec: 2097152`.
    pub shard_bytes_per_sec: Option<Value>,

    /// `initial` backfills every table the slot streams once: when the slot is new,
    /// or its checkpoint records no finished snapshot. Default `none`.
    /// Example: `snapshot: initial`.
    pub snapshot: Option<Value>,

    /// Rows per backfill chunk (one `SELECT … ORDER BY key LIMIT n`), 1..=100000.
    /// Default 10000. Example: `snapshot_chunk_rows: 5000`.
    pub snapshot_chunk_rows: Option<Value>,

    /// At most this many backfilled rows a second, 1..=4294967295. Default: as fast
    /// as Kinesis accepts them (live changes keep priority either way).
    /// Example: `snapshot_max_rows_per_sec: 2000`.
    pub snapshot_max_rows_per_sec: Option<Value>,

    /// What a row whose record is larger than the stream takes (`max_record_bytes`)
    /// does: `fail` stops the slot with an error naming the row; `s3` puts the full
    /// record into `oversize_bucket` and a small claim-check record on the stream in
    /// its place, in order. Default `fail`. Example: `oversize: s3`.
    pub oversize: Option<Value>,

    /// S3 bucket for `oversize: s3` (required with it): a bucket name, not an ARN.
    /// `${ENV}` expanded. Example: `oversize_bucket: my-cdc-oversize`.
    pub oversize_bucket: Option<Value>,

    /// Start of every object key; the key is `<prefix><slot>/<commit_lsn>/<seq>.json`.
    /// Not starting with `/`, at most 512 bytes. Default `pg-cdc-to-kinesis/`.
    /// `${ENV}` expanded. Example: `oversize_prefix: cdc/oversize/`.
    pub oversize_prefix: Option<Value>,
    /// Per-table rules, in order; the first entry whose `match` fits a table applies
    /// to it, and a table no entry matches streams as without the list. Each entry:
    /// `match` (`schema.table`, `*` a glob in either part), and optionally `skip`
    /// (never streamed), `stream` (another Kinesis stream), `partition_key`,
    /// `exclude_columns`, `mask_columns` (`sha256` or `redact`), `partition_root`,
    /// `oversize`. Example: `tables: [{match: public.orders, stream: orders-cdc}]`.
    pub tables: Option<Value>,

    /// Salt of the `sha256` column masks (`tables: ... mask_columns`): the hash is of
    /// the salt followed by the value, so equal values stay equal but a guessed value
    /// cannot be checked without the salt. Without one the hash is unsalted (a warning
    /// at start-up). `${ENV}` expanded. Example: `mask_salt: ${CDC_MASK_SALT}`.
    pub mask_salt: Option<Value>,

    /// The records' envelope: `native` (this project's record, the default) or
    /// `debezium` (the Debezium PostgreSQL connector's change-event value, as its JSON
    /// converter writes it with `schemas.enable=false`). Example: `record_format: debezium`.
    pub record_format: Option<Value>,

    /// Numbers (integers, floats, `numeric`) as JSON strings holding the digits
    /// wal2json printed, so a parser that reads numbers as doubles keeps every digit
    /// (what wal2json 2.6's `numeric-data-types-as-string` does; 2.5 lacks it).
    /// Default `false`. Example: `numeric_as_string: true`.
    pub numeric_as_string: Option<Value>,

    /// `json`/`jsonb` values (and arrays of them) as JSON, not as escaped strings;
    /// a value that is not valid JSON stays a string (logged). Default `false`.
    /// Example: `json_as_object: true`.
    pub json_as_object: Option<Value>,

    /// `postgres` (as PostgreSQL prints them, the default) or `iso8601`:
    /// `timestamptz` `2024-01-02 03:04:05.123456+00` → `2024-01-02T03:04:05.123456Z`,
    /// `timestamp` with the `T` and no zone, BC years as signed years, `timetz`'s
    /// zone as `Z`/`±hh:mm`; every fractional digit kept. Example: `timestamps: iso8601`.
    pub timestamps: Option<Value>,

    /// What an update record says about TOASTed columns whose value did not change,
    /// which wal2json leaves out of the update: `omit` (absent from `data`, as
    /// before), `list` (`"unchanged_toast": ["col", …]` names them) or `placeholder`
    /// (each appears in `data` with `unchanged_toast_placeholder` as its value).
    /// Default `list`. Example: `unchanged_toast: placeholder`.
    pub unchanged_toast: Option<Value>,

    /// The value a left-out TOASTed column gets under `unchanged_toast: placeholder`,
    /// a text of at most 256 bytes. Default `__debezium_unavailable_value` (Debezium's).
    /// Example: `unchanged_toast_placeholder: "__unchanged"`.
    pub unchanged_toast_placeholder: Option<Value>,

    /// `true` reports the changes of a partition under its top partitioned table's
    /// name (and key), and expands a partitioned table named in `add-tables` /
    /// `filter-tables` to its partitions. Default `false`. Example: `partition_root: true`.
    pub partition_root: Option<Value>,
}
