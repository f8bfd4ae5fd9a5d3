//! Test support: real servers (PostgreSQL 15 + wal2json, kinesalite) started once per
//! test binary, and a scripted Kinesis stub for faults the emulators cannot produce.

pub mod case;
pub mod certs;
pub mod daemon;
pub mod fake_pg;
pub mod kinesis;
pub mod lambda_api;
pub mod moto;
pub mod pg;
pub mod process;
pub mod proxy;
pub mod stub;
pub mod workload;
