//! Rows larger than the stream takes (`oversize`): the binary against real PostgreSQL
//! 15 + wal2json, kinesalite, and moto's S3. A 2 MiB row under `oversize: s3` becomes
//! an S3 object and a claim check in its key's order (live and backfilled); under
//! `fail` the slot stops naming both fixes; with S3 unreachable the slot is not
//! acknowledged past the row until the object is stored.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::record::oversize::claim_check;
use pg_cdc_to_kinesis::source;
use sha2::{Digest, Sha256};

use crate::support::kinesis::{self, kinesalite, unique_stream_name, ReadRecord};
use crate::support::moto::{self, Moto};
use crate::support::pg::{self, password_for, unique_name, SUPERUSER};
use crate::support::process::{self, Streamer};

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

fn write_config(dir: &Path, db: &str, slot: &str, stream: &str, extra: &str) -> PathBuf {
    let pg = pg::shared();
    let yaml = format!(
        "replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      password: {}\n      db_name: {db}\n      options: {{add-tables: 'public.docs'}}\n      kns_stream: {stream}\n      status_interval_secs: 1\n      checkpoint: false\n{extra}",
        pg.port,
        password_for(SUPERUSER).unwrap_or_default(),
    );
    let path = dir.join("configs.yml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

async fn confirmed_flush(db: &str, slot: &str) -> Lsn {
    let client = source::sql_connect(&pg::shared().connect_params(SUPERUSER, db))
        .await
        .expect("connect");
    source::slot_info(&client, slot)
        .await
        .expect("slot info")
        .and_then(|i| i.confirmed_flush_lsn)
        .unwrap_or_default()
}

fn current_lsn(db: &str) -> Lsn {
    pg::shared()
        .psql_in(db, "SELECT pg_current_wal_lsn()")
        .trim()
        .parse()
        .expect("an LSN")
}

fn drop_slot(db: &str, slot: &str) {
    let pg = pg::shared();
    for _ in 0..100 {
        if pg
            .try_psql_in(db, &format!("SELECT pg_drop_replication_slot('{slot}')"))
            .is_ok()
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_row_goes_to_s3_and_its_claim_check_keeps_its_place_in_the_key_order() {
    let pg = pg::shared();
    let moto = moto::shared();
    let db = pg.create_database(&unique_name("oversize_s3"));
    // Row 3 exists before the slot: the initial snapshot reads it (a backfilled row
    // over the limit takes the same path as a live one).
    pg.execute(
        &db,
        &format!(
            "CREATE TABLE docs (id int PRIMARY KEY, v int, body text);
             INSERT INTO docs VALUES (3, 30, repeat('b', {BIG}));"
        ),
    );
    let slot = unique_name("oversize_s3");
    let stream = unique_stream_name("oversize");
    let bucket = bucket_name("oversize-s3");
    kinesis::create_stream(&kinesalite().client(), &stream, 2).await;
    create_bucket(&moto.endpoint, &bucket).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &db,
        &slot,
        &stream,
        "      snapshot: initial\n      oversize: s3\n      oversize_bucket: ${CLAIMS}\n      oversize_prefix: claims/\n",
    );
    let mut streamer = Streamer::start_with_env(
        &kinesalite().endpoint,
        &config,
        &[("AWS_ENDPOINT_URL_S3", &moto.endpoint), ("CLAIMS", &bucket)],
    );
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "{}",
        streamer.log()
    );
    // The snapshot's row first: rows inserted while it reads could be read too (a
    // legal duplicate as a `read`), which would blur the order asserted below.
    let first = kinesis::read_until(&kinesalite().client(), &stream, 1, STARTUP).await;
    assert_eq!(first.len(), 1, "the snapshot's row\n{}", streamer.log());

    pg.execute(
        &db,
        "INSERT INTO docs VALUES (1, 1, 'small'), (2, 1, 'other')",
    );
    pg.execute(&db, "UPDATE docs SET v = 2 WHERE id = 1");
    pg.execute(
        &db,
        &format!("UPDATE docs SET v = 3, body = repeat('x', {BIG}) WHERE id = 1; UPDATE docs SET v = 2 WHERE id = 2"),
    );
    pg.execute(&db, "UPDATE docs SET v = 4 WHERE id = 1");
    pg.execute(&db, "UPDATE docs SET v = 3 WHERE id = 2");
    let after = current_lsn(&db);
    // 1 read + 2 inserts + 5 updates.
    let records = kinesis::read_until(&kinesalite().client(), &stream, 8, STARTUP).await;
    let deadline = Instant::now() + STARTUP;
    while confirmed_flush(&db, &slot).await < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = confirmed_flush(&db, &slot).await;
    let log = streamer.kill();
    drop_slot(&db, &slot);

    let one: Vec<String> = of_key(&records, "public.docs|1")
        .iter()
        .map(label)
        .collect();
    assert_eq!(
        one,
        ["insert:1", "update:2", "update:claim", "update:4"],
        "the claim check keeps its place in the key's order\n{log}"
    );
    let two: Vec<String> = of_key(&records, "public.docs|2")
        .iter()
        .map(label)
        .collect();
    assert_eq!(two, ["insert:1", "update:2", "update:3"]);
    assert!(
        confirmed >= after,
        "confirmed {confirmed} once every record was accepted (wanted {after})"
    );
    for r in &records {
        assert!(r.data.len() + r.partition_key.len() <= 1024 * 1024);
    }

    let live = records
        .iter()
        .find(|r| {
            r.partition_key == "public.docs|1" && r.json().unwrap().get("claim_check").is_some()
        })
        .expect("the live claim check");
    let claim: serde_json::Value = live.json().unwrap();
    let object = check_object(&moto.endpoint, &bucket, live).await;
    eprintln!(
        "oversize: a {}-byte record became a {}-byte claim check and a {}-byte object",
        claim["claim_check"]["bytes"],
        live.data.len(),
        claim["claim_check"]["bytes"]
    );
    assert_eq!(object["data"]["v"], 3);
    assert_eq!(object["data"]["body"].as_str().map(str::len), Some(BIG));
    assert!(object["data"]["body"]
        .as_str()
        .unwrap()
        .bytes()
        .all(|b| b == b'x'));
    for kept in [
        "kind",
        "database",
        "schema",
        "table",
        "timestamp",
        "lsn",
        "commit_lsn",
        "xid",
        "seq",
    ] {
        assert_eq!(claim[kept], object[kept], "{kept} kept in the claim check");
    }
    assert!(claim.get("data").is_none() && claim.get("old").is_none());
    let commit: Lsn = claim["commit_lsn"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        claim["claim_check"]["key"],
        format!("claims/{slot}/{:016X}/{}.json", commit.0, claim["seq"]).as_str(),
        "the key is derived from slot, commit LSN and seq"
    );

    let read = records
        .iter()
        .find(|r| r.partition_key == "public.docs|3")
        .expect("the backfilled row");
    let read_claim = read.json().unwrap();
    assert_eq!(read_claim["kind"], "read");
    assert!(read_claim["snapshot"].is_object(), "{read_claim}");
    let object = check_object(&moto.endpoint, &bucket, read).await;
    assert_eq!(object["data"]["v"], 30);
    assert_eq!(object["data"]["body"].as_str().map(str::len), Some(BIG));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_mode_stops_the_slot_naming_oversize_s3_and_exclude_columns() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("oversize_fail"));
    pg.execute(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, v int, body text)",
    );
    let slot = unique_name("oversize_fail");
    let stream = unique_stream_name("oversize-fail");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &db, &slot, &stream, "");
    let mut streamer = Streamer::start(&kinesalite().endpoint, &config);
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "{}",
        streamer.log()
    );
    pg.execute(&db, "INSERT INTO docs VALUES (1, 1, 'small')");
    pg.execute(
        &db,
        &format!("INSERT INTO docs VALUES (2, 1, repeat('x', {BIG}))"),
    );
    // At or past the big row's commit (other tests' databases write WAL too).
    let after_big = current_lsn(&db);
    let stopped = streamer.wait_for_log("over the stream's", STARTUP);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let confirmed = confirmed_flush(&db, &slot).await;
    let log = streamer.kill();
    drop_slot(&db, &slot);
    assert!(stopped, "{log}");
    let line = log
        .lines()
        .find(|l| l.contains("over the stream's"))
        .unwrap_or_default();
    for fix in [
        "public.docs",
        "oversize: s3",
        "oversize_bucket",
        "exclude_columns",
        "not dropped",
    ] {
        assert!(line.contains(fix), "{fix} missing from: {line}");
    }
    assert!(
        confirmed < after_big,
        "confirmed {confirmed}, past the row (committed before {after_big})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_s3_unreachable_the_slot_is_not_acknowledged_past_the_row_until_the_object_is_stored()
{
    let pg = pg::shared();
    let s3_server = Moto::start().expect("a private moto");
    let bucket = bucket_name("oversize-down");
    // S3 is down from the start.
    s3_server.stop();
    let db = pg.create_database(&unique_name("oversize_down"));
    pg.execute(
        &db,
        "CREATE TABLE docs (id int PRIMARY KEY, v int, body text)",
    );
    let slot = unique_name("oversize_down");
    let stream = unique_stream_name("oversize-down");
    kinesis::create_stream(&kinesalite().client(), &stream, 2).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &db,
        &slot,
        &stream,
        &format!("      oversize: s3\n      oversize_bucket: {bucket}\n"),
    );
    let mut streamer = Streamer::start_with_env(
        &kinesalite().endpoint,
        &config,
        &[("AWS_ENDPOINT_URL_S3", &s3_server.endpoint)],
    );
    assert!(
        streamer.wait_for_log("streaming from", STARTUP),
        "{}",
        streamer.log()
    );
    pg.execute(&db, "INSERT INTO docs VALUES (1, 1, 'small')");
    pg.execute(
        &db,
        &format!("INSERT INTO docs VALUES (2, 1, repeat('x', {BIG}))"),
    );
    pg.execute(&db, "INSERT INTO docs VALUES (3, 1, 'after')");
    pg.execute(&db, "UPDATE docs SET v = 2 WHERE id = 2");
    let after = current_lsn(&db);

    // Other keys flow past the waiting claim check.
    let early = kinesis::read_until(&kinesalite().client(), &stream, 2, STARTUP).await;
    let retried = streamer.wait_for_log("S3 PutObject failed", STARTUP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = confirmed_flush(&db, &slot).await;
    let early_again = kinesis::read_all(&kinesalite().client(), &stream).await;

    // S3 comes back (moto keeps no state: the bucket is created again).
    s3_server.start_again().expect("moto again");
    create_bucket(&s3_server.endpoint, &bucket).await;
    let records = kinesis::read_until(&kinesalite().client(), &stream, 4, STARTUP).await;
    let deadline = Instant::now() + STARTUP;
    while confirmed_flush(&db, &slot).await < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = confirmed_flush(&db, &slot).await;
    let log = streamer.kill();
    drop_slot(&db, &slot);

    assert!(retried, "{log}");
    let early_keys: Vec<&str> = early.iter().map(|r| r.partition_key.as_str()).collect();
    assert!(
        early_keys.contains(&"public.docs|1") && early_keys.contains(&"public.docs|3"),
        "keys other than the big row's went on: {early_keys:?}\n{log}"
    );
    assert!(
        early_again
            .iter()
            .all(|r| r.partition_key != "public.docs|2"),
        "nothing of the big row's key before its object is stored"
    );
    let two: Vec<String> = of_key(&records, "public.docs|2")
        .iter()
        .map(label)
        .collect();
    assert_eq!(two, ["insert:claim", "update:2"], "{log}");
    let claim = records
        .iter()
        .find(|r| r.partition_key == "public.docs|2")
        .unwrap();
    // The transaction's end, which acknowledging the row would confirm.
    let big_commit: Lsn = claim.json().unwrap()["commit_lsn"]
        .as_str()
        .expect("commit_lsn")
        .parse()
        .unwrap();
    assert!(
        held < big_commit,
        "while S3 was down the slot was confirmed to {held}, past the row's transaction (ends at {big_commit})"
    );
    check_object(&s3_server.endpoint, &bucket, claim).await;
    assert!(confirmed >= after, "confirmed {confirmed}, wanted {after}");
}

#[test]
fn oversize_s3_without_a_bucket_is_a_config_error_with_its_place_and_exit_2() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("configs.yml");
    std::fs::write(
        &path,
        "replication_slots:\n  - s1:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n      oversize: s3\n",
    )
    .unwrap();
    let out = process::run(
        process::command(
            &kinesalite().endpoint,
            &["run", "--config", path.to_str().unwrap()],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("configs.yml:7:17") && out.stderr.contains("oversize_bucket"),
        "{}",
        out.describe()
    );
    std::fs::write(
        &path,
        "replication_slots:\n  - s1:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n      oversize: s3\n      oversize_bucket: Not_A_Bucket\n",
    )
    .unwrap();
    let out = process::run(
        process::command(
            &kinesalite().endpoint,
            &["run", "--config", path.to_str().unwrap()],
        ),
        Duration::from_secs(30),
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains("configs.yml:8:24") && out.stderr.contains("invalid S3 bucket name"),
        "{}",
        out.describe()
    );
}
