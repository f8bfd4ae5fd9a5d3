//! Test support: real servers (PostgreSQL 15 + wal2json, kinesalite) started once per
//! test binary, and a scripted Kinesis stub for faults the emulators cannot produce.

pub mod kinesis;
pub mod moto;
pub mod pg;
pub mod process;
pub mod stub;
