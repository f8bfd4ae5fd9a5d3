//! pg-cdc-to-kinesis: stream PostgreSQL logical-replication changes (wal2json)
//! into AWS Kinesis Data Streams, at least once and in per-key order.
//!
//! # Layout
//!
//! Data flows one way, and the modules follow it:
//!
//! - [`config`]: `configs.yml` → validated [`config::Config`].
//! - [`credentials`]: passwords from Secrets Manager (with rotation) or RDS IAM tokens.
//! - [`source`]: the replication-protocol client and the slot SQL.
//! - [`decode`]: wal2json output → [`decode::Event`]s.
//! - [`record`]: a row change → one Kinesis record (JSON payload, partition key).
//! - [`backfill`]: existing rows onto the stream in watermarked chunks, beside the changes.
//! - [`sink`]: the shard map and per-shard pacing, per-key queues, KPL aggregation,
//!   `PutRecords` with partial-failure retry.
//! - [`ack`]: which LSN may be confirmed, given what Kinesis accepted.
//! - [`checkpoint`]: the confirmed LSN kept in SSM, checked against the slot at startup.
//! - [`pipeline`]: one slot's worker: its sessions, backpressure, acknowledgement,
//!   reconnects, stopped-slot retries and restart signals.
//! - [`run`]: the process wiring above it all: one worker per slot, the operations
//!   server and WAL monitors ([`serve`]), SIGHUP reloads and shutdown.
//! - [`lsn`]: the WAL-position newtype used everywhere.
//! - [`alloc`]: the process allocator (mimalloc) the binary installs.
//! - [`telemetry`]: logging, the console progress lines, one-line AWS error messages.
//! - [`check`], [`tail`], [`status`]: the operator commands besides `run`.
//! - [`metrics`], [`monitor`], [`serve`]: operating it: metric names and outputs (EMF,
//!   Prometheus), WAL safety and heartbeats, the `/healthz` `/readyz` `/metrics` server.
//! - [`signal`]: requests to a running streamer (backfill, restart), written into the
//!   slot's WAL as logical messages.
//! - [`admin`]: the admin Lambda's commands (provision, health, drop).

pub mod ack;
pub mod admin;
pub mod alloc;
pub mod backfill;
pub mod check;
pub mod checkpoint;
pub mod config;
pub mod credentials;
pub mod decode;
pub mod lsn;
pub mod metrics;
pub mod monitor;
pub mod pipeline;
pub mod record;
pub mod run;
pub mod serve;
pub mod signal;
pub mod sink;
pub mod source;
pub mod status;
pub mod tail;
pub mod telemetry;
