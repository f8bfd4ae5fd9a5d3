//! The emulators as the tests use them: kinesalite keeps per-shard order and `read_until`
//! waits and gives up; moto serves SSM and an outage refuses connections.

use std::time::{Duration, Instant};

use crate::support::kinesis::{self, put, verify, ReadRecord};

use super::*;

#[tokio::test]
async fn kinesalite_round_trip_keeps_per_shard_order() {
    let client = kinesis::kinesalite().client();
    let stream = kinesis::unique_stream_name("harness-roundtrip");
    kinesis::create_stream(&client, &stream, 3).await;
    put(&client, &stream, entries(30, 5)).await;
    put(&client, &stream, entries(60, 5).split_off(30)).await;

    let records = kinesis::read_all(&client, &stream).await;
    let verdict = verify(&ground_truth(60, 5), &records, |r: &ReadRecord| {
        parse(&r.data)
    });
    assert_eq!(verdict.delivered, 60, "{verdict}");
    verdict.assert_exactly_once_in_order();
    for r in &records {
        let twin = records
            .iter()
            .find(|o| o.partition_key == r.partition_key)
            .map(|o| &o.shard_id);
        assert_eq!(
            Some(&r.shard_id),
            twin,
            "key {} spans shards",
            r.partition_key
        );
    }
    let shards: std::collections::BTreeSet<_> =
        records.iter().map(|r| r.shard_id.clone()).collect();
    assert!(
        shards.len() > 1,
        "5 keys on 3 shards all landed on {shards:?}"
    );
    kinesis::delete_stream(&client, &stream).await;
}

#[tokio::test]
async fn read_until_waits_for_records_and_gives_up_at_the_timeout() {
    let client = kinesis::kinesalite().client();
    let stream = kinesis::unique_stream_name("harness-until");
    kinesis::create_stream(&client, &stream, 1).await;
    let writer = {
        let (client, stream) = (client.clone(), stream.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            put(&client, &stream, entries(4, 2)).await;
        })
    };
    let records = kinesis::read_until(&client, &stream, 4, Duration::from_secs(10)).await;
    assert_eq!(records.len(), 4);
    writer.await.expect("writer task");

    let started = Instant::now();
    let records = kinesis::read_until(&client, &stream, 5, Duration::from_millis(500)).await;
    assert_eq!(records.len(), 4);
    assert!(started.elapsed() >= Duration::from_millis(500));
    kinesis::delete_stream(&client, &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_serves_ssm_and_an_outage_refuses_connections() {
    use crate::support::moto::Moto;
    let moto = Moto::start().expect("moto starts");
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    ssm.put_parameter()
        .name("/harness/p")
        .value("v1")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .expect("put");
    let got = ssm
        .get_parameter()
        .name("/harness/p")
        .send()
        .await
        .expect("get");
    assert_eq!(got.parameter().and_then(|p| p.value()), Some("v1"));
    moto.stop();
    assert!(
        ssm.get_parameter().name("/harness/p").send().await.is_err(),
        "moto is down"
    );
    moto.start_again().expect("moto restarts");
    assert!(
        ssm.get_parameter().name("/harness/p").send().await.is_err(),
        "a restarted moto has no state"
    );
}
