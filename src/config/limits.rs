//! The config's defaults and limits as named constants: Kinesis and PostgreSQL limits,
//! each key's default and upper bound, and the wal2json options a slot may pass.
//!
//! Owns the numbers only; the keys that use them check values against them.

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
