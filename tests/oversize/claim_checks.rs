//! `oversize: s3`: a 2 MiB row (live and backfilled) becomes an S3 object and a claim
//! check in its key's order, and with S3 unreachable the slot is not acknowledged past
//! the row until the object is stored.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;

use crate::support::kinesis::{self, kinesalite};
use crate::support::moto::{self, Moto};
use crate::support::pg;
use crate::support::process::Streamer;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_mib_row_goes_to_s3_and_its_claim_check_keeps_its_place_in_the_key_order() {
    let pg = pg::shared();
    let moto = moto::shared();
    // Row 3 exists before the slot: the initial snapshot reads it (a backfilled row
    // over the limit takes the same path as a live one).
    let case = docs_case(
        "oversize_s3",
        &format!("INSERT INTO docs VALUES (3, 30, repeat('b', {BIG}));"),
        2,
    )
    .await;
    let (db, slot, stream) = (&case.db, &case.slot, &case.stream);
    let bucket = bucket_name("oversize-s3");
    create_bucket(&moto.endpoint, &bucket).await;
    let config = write_config(
        &case,
        "      snapshot: initial\n      oversize: s3\n      oversize_bucket: ${CLAIMS}\n      oversize_prefix: claims/\n",
    );
    let streamer = Streamer::streaming_with_env(
        &kinesalite().endpoint,
        &config,
        &[("AWS_ENDPOINT_URL_S3", &moto.endpoint), ("CLAIMS", &bucket)],
    );
    // The snapshot's row first: rows inserted while it reads could be read too (a
    // legal duplicate as a `read`), which would blur the order asserted below.
    let first = kinesis::read_until(&kinesalite().client(), stream, 1, STARTUP).await;
    assert_eq!(first.len(), 1, "the snapshot's row\n{}", streamer.log());

    pg.execute(
        db,
        "INSERT INTO docs VALUES (1, 1, 'small'), (2, 1, 'other')",
    );
    pg.execute(db, "UPDATE docs SET v = 2 WHERE id = 1");
    pg.execute(
        db,
        &format!("UPDATE docs SET v = 3, body = repeat('x', {BIG}) WHERE id = 1; UPDATE docs SET v = 2 WHERE id = 2"),
    );
    pg.execute(db, "UPDATE docs SET v = 4 WHERE id = 1");
    pg.execute(db, "UPDATE docs SET v = 3 WHERE id = 2");
    let after = current_lsn(db);
    // 1 read + 2 inserts + 5 updates.
    let records = kinesis::read_until(&kinesalite().client(), stream, 8, STARTUP).await;
    let deadline = Instant::now() + STARTUP;
    while case.confirmed_flush() < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = case.confirmed_flush();
    let log = streamer.kill();
    pg.drop_slot(slot);

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
async fn with_s3_unreachable_the_slot_is_not_acknowledged_past_the_row_until_the_object_is_stored()
{
    let pg = pg::shared();
    let s3_server = Moto::start().expect("a private moto");
    let bucket = bucket_name("oversize-down");
    // S3 is down from the start.
    s3_server.stop();
    let case = docs_case("oversize_down", "", 2).await;
    let (db, slot, stream) = (&case.db, &case.slot, &case.stream);
    let config = write_config(
        &case,
        &format!("      oversize: s3\n      oversize_bucket: {bucket}\n"),
    );
    let mut streamer = Streamer::streaming_with_env(
        &kinesalite().endpoint,
        &config,
        &[("AWS_ENDPOINT_URL_S3", &s3_server.endpoint)],
    );
    pg.execute(db, "INSERT INTO docs VALUES (1, 1, 'small')");
    pg.execute(
        db,
        &format!("INSERT INTO docs VALUES (2, 1, repeat('x', {BIG}))"),
    );
    pg.execute(db, "INSERT INTO docs VALUES (3, 1, 'after')");
    pg.execute(db, "UPDATE docs SET v = 2 WHERE id = 2");
    let after = current_lsn(db);

    // Other keys flow past the waiting claim check.
    let early = kinesis::read_until(&kinesalite().client(), stream, 2, STARTUP).await;
    let retried = streamer.wait_for_log("S3 PutObject failed", STARTUP);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let held = case.confirmed_flush();
    let early_again = kinesis::read_all(&kinesalite().client(), stream).await;

    // S3 comes back (moto keeps no state: the bucket is created again).
    s3_server.start_again().expect("moto again");
    create_bucket(&s3_server.endpoint, &bucket).await;
    let records = kinesis::read_until(&kinesalite().client(), stream, 4, STARTUP).await;
    let deadline = Instant::now() + STARTUP;
    while case.confirmed_flush() < after && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let confirmed = case.confirmed_flush();
    let log = streamer.kill();
    pg.drop_slot(slot);

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
