//! The one integration-test binary. Tests run in parallel against shared servers, so
//! every test uses its own slot, stream and table names and cleans up after itself.

mod support;

mod admin;
mod auth;
mod backfill;
mod checkpoint;
mod cli;
mod console;
mod delivery;
mod e2e;
mod envelope;
mod faults;
mod harness;
mod keys;
mod kpl;
mod libpq_env;
mod messages;
mod metrics;
mod module_graph;
mod ops;
mod oversize;
mod preflight;
mod reload;
mod routing;
mod secrets;
mod shape;
mod shards;
mod source;
mod stub_model;
mod tail;
mod tls;
mod wal2json;
mod wire;
