//! pg-cdc-to-kinesis: stream PostgreSQL logical-replication changes (wal2json)
//! into AWS Kinesis Data Streams, at least once and in per-key order.
//!
//! # Layout
//!
//! Data flows one way, and the modules follow it:
//!
//! - [`config`]: `configs.yml` → validated [`config::Config`].
//! - [`source`]: the replication-protocol client and the slot SQL.
//! - [`decode`]: wal2json output → [`decode::Event`]s.
//! - [`record`]: a row change → one Kinesis record (JSON payload, partition key).
//! - [`sink`]: batching and `PutRecords`, partial-failure retry, per-key order.
//! - [`ack`]: which LSN may be confirmed, given what Kinesis accepted.
//! - [`pipeline`]: one worker per slot, backpressure, acknowledgement, shutdown.
//! - [`lsn`]: the WAL-position newtype used everywhere.
//! - [`telemetry`]: logging and the console progress lines.
//! - [`check`], [`tail`]: the operator commands besides `run`.

pub mod ack;
pub mod check;
pub mod config;
pub mod decode;
pub mod lsn;
pub mod pipeline;
pub mod record;
pub mod sink;
pub mod source;
pub mod tail;
pub mod telemetry;
