//! Rows larger than the stream takes (`oversize`): the binary against real PostgreSQL
//! 15 + wal2json, kinesalite, and moto's S3. A 2 MiB row under `oversize: s3` becomes
//! an S3 object and a claim check in its key's order (live and backfilled); under
//! `fail` the slot stops naming both fixes; with S3 unreachable the slot is not
//! acknowledged past the row until the object is stored.
//!
//! Shared here: the S3 client, the `docs` case and its config, and the claim-check
//! readers; the tests sit in one submodule per theme.

mod claim_checks;
mod refusals;

use std::path::PathBuf;
use std::time::Duration;

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::record::oversize::claim_check;
use sha2::{Digest, Sha256};

use crate::support::case::Case;
use crate::support::kinesis::{self, ReadRecord};
use crate::support::pg::{self, unique_name};

const STARTUP: Duration = Duration::from_secs(60);
/// The big row: twice Kinesis' 1 MiB record limit.
const BIG: usize = 2 * 1024 * 1024;

fn s3(endpoint: &str) -> aws_sdk_s3::Client {
    let conf = aws_sdk_s3::config::Builder::from(&kinesis::sdk_config(endpoint))
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(conf)
}

async fn create_bucket(endpoint: &str, bucket: &str) {
    s3(endpoint)
        .create_bucket()
        .bucket(bucket)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateBucket {bucket}: {e:?}"));
}

async fn get_object(endpoint: &str, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3(endpoint)
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GetObject {bucket}/{key}: {e:?}"));
    out.body.collect().await.expect("object body").to_vec()
}

fn bucket_name(prefix: &str) -> String {
    unique_name(prefix).replace('_', "-")
}

/// One test's [`Case`]: a database with table `docs` (and whatever `sql` adds), and
/// its stream of `shards` shards on kinesalite.
async fn docs_case(prefix: &str, sql: &str, shards: i32) -> Case<'static> {
    let case = Case::new(pg::shared(), prefix).with_sql(&format!(
        "CREATE TABLE docs (id int PRIMARY KEY, v int, body text); {sql}"
    ));
    case.kinesalite_stream(shards).await;
    case
}

/// Writes the case's config: `public.docs` without checkpoints, then `extra` slot keys.
fn write_config(case: &Case, extra: &str) -> PathBuf {
    let slot = case.slot_yaml(
        case.pg.port,
        "{add-tables: 'public.docs'}",
        &["status_interval_secs: 1", "checkpoint: false"],
    );
    case.write_config(&format!("{slot}{extra}"))
}

/// The WAL insert position: past every commit so far. (Not `pg_current_wal_lsn()`, the
/// write position, which lags a commit under the test clusters' `synchronous_commit = off`.)
fn current_lsn(db: &str) -> Lsn {
    pg::shared()
        .psql_in(db, "SELECT pg_current_wal_insert_lsn()")
        .trim()
        .parse()
        .expect("an LSN")
}

/// The records of `key`, in stream order (a key lives on one shard).
fn of_key(records: &[ReadRecord], key: &str) -> Vec<serde_json::Value> {
    records
        .iter()
        .filter(|r| r.partition_key == key)
        .map(|r| r.json().expect("JSON"))
        .collect()
}

/// What a record says about `v` (the claim check's `"claim"` for a claim check).
fn label(record: &serde_json::Value) -> String {
    match record.get("claim_check") {
        Some(_) => format!("{}:claim", record["kind"].as_str().unwrap_or("?")),
        None => format!(
            "{}:{}",
            record["kind"].as_str().unwrap_or("?"),
            record["data"]["v"]
        ),
    }
}

/// The object behind a claim check: fetched, and checked against the claim byte for
/// byte (the claim check is exactly the object with its data swapped for the claim).
async fn check_object(
    endpoint: &str,
    bucket: &str,
    claim_record: &ReadRecord,
) -> serde_json::Value {
    let claim: serde_json::Value = claim_record.json().expect("JSON");
    let check = &claim["claim_check"];
    assert_eq!(check["bucket"], bucket);
    let key = check["key"].as_str().expect("a key");
    let object = get_object(endpoint, bucket, key).await;
    assert_eq!(check["bytes"], object.len(), "bytes");
    assert_eq!(
        check["sha256"],
        hex::encode(Sha256::digest(&object)).as_str(),
        "sha256"
    );
    assert_eq!(
        claim_check(&object, bucket, key).expect("a JSON object"),
        claim_record.data,
        "the claim check is the object's record with its data replaced"
    );
    serde_json::from_slice(&object).expect("the object is a JSON record")
}
