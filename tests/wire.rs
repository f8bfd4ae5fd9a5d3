//! The `PutRecords` wire format against kinesalite, which takes both: a big
//! transaction in CBOR (the default), whose answers kinesalite cuts short past 16 KiB,
//! still arrives whole, the slot turning to JSON after the first unreadable answer.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::case::{config_yaml, drop_slot, streaming_in_process};
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name};

const ROWS: usize = 1_200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cbor_answer_cut_short_turns_the_slot_to_json_and_every_row_arrives() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("wire"));
    pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let slot = unique_name("wire");
    let stream = unique_stream_name("wire");
    let k = kinesalite();
    kinesis::create_stream(&k.client(), &stream, 2).await;
    let yaml = config_yaml(&[(&slot, &db, "{add-tables: 'public.t'}", &stream)], "");
    let (pipeline, _dir) = streaming_in_process(&yaml, k.sdk_config()).await;
    // One transaction: its records go out in requests of up to 500, each answered in
    // more than 16 KiB of CBOR, which kinesalite cuts short.
    pg.execute(
        &db,
        &format!("INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, {ROWS}) g"),
    );
    let records = kinesis::read_until(&k.client(), &stream, ROWS, Duration::from_secs(60)).await;
    let stats = pipeline.slots[0].stats.clone();
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&db, &slot);
    let ids: HashSet<i64> = records
        .iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.data).expect("a JSON record");
            v["data"]["id"].as_i64().expect("an id")
        })
        .collect();
    assert_eq!(ids.len(), ROWS, "distinct rows on the stream");
    // The first requests went in CBOR and were answered unreadably: sent again.
    let retried = stats
        .records_retried
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        retried > 0,
        "no record was sent again: was the answer read?"
    );
}
