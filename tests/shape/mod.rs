//! Table shapes from the catalog, with real PostgreSQL 15 + wal2json and kinesalite:
//! an unchanged TOASTed column made explicit (`unchanged_toast: omit|list|placeholder`)
//! in both wal2json formats, and partitioned tables reported under their root
//! (`partition_root: true`) with rows moving between partitions kept in key order
//! and a partition attached while streaming.
//!
//! Shared here: the TOASTed table and the commit-order reader; the tests sit in one
//! submodule per table shape.

mod catalog;
mod partitions;
mod toast;

use serde_json::Value;

use crate::support::kinesis::ReadRecord;

/// Payloads in commit order.
fn in_commit_order(records: &[ReadRecord]) -> Vec<Value> {
    let mut out: Vec<Value> = records.iter().map(|r| r.json().unwrap()).collect();
    out.sort_by_key(|v| {
        (
            v["commit_lsn"]
                .as_str()
                .map(|s| s.parse::<pg_cdc_to_kinesis::lsn::Lsn>().unwrap()),
            v["seq"].as_u64(),
        )
    });
    out
}

/// 8 kB of md5 hex: pglz cannot compress it, so it is stored out of line (TOASTed).
const BIG: &str = "(SELECT string_agg(md5(i::text), '') FROM generate_series(1, 256) i)";

const DOCS: &str = "CREATE TABLE docs (id int PRIMARY KEY, big text, small text, n int, \
                    doubled int GENERATED ALWAYS AS (n * 2) STORED)";
