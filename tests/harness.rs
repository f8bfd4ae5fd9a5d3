//! Tests of the Kinesis test harness itself, through the AWS SDK directly: kinesalite
//! round trips, the stub's fault script, and the verifier on crafted deliveries. If
//! these fail, every end-to-end result is suspect.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use crate::support::kinesis::{self, put, verify, ReadRecord, Verdict};
use crate::support::stub::{KinesisStub, RecordError, StallMode, StubRecord};

/// `n` entries keyed `k0..k{keys}` round robin, data `"<key>:<id>"`.
fn entries(n: u64, keys: u64) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|id| {
            let key = format!("k{}", id % keys);
            PutRecordsRequestEntry::builder()
                .partition_key(&key)
                .data(Blob::new(format!("{key}:{id}")))
                .build()
                .expect("entry has data and key")
        })
        .collect()
}

fn ground_truth(n: u64, keys: u64) -> Vec<(String, u64)> {
    (0..n).map(|id| (format!("k{}", id % keys), id)).collect()
}

/// (key, id) back from `"<key>:<id>"`.
fn parse(data: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let (key, id) = text.split_once(':')?;
    Some((key.to_string(), id.parse().ok()?))
}

/// A client that surfaces every fault instead of retrying it away.
fn no_retry_client(stub: &KinesisStub, attempt_timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder();
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    let config = stub
        .sdk_config()
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.build())
        .build();
    Client::new(&config)
}

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

#[tokio::test]
async fn stub_fails_the_requested_fraction_and_stores_only_accepted_records() {
    let stub = KinesisStub::with_seed(42);
    stub.create_stream("s", 4);
    stub.fail_records(0.3, RecordError::Mixed);
    let client = stub.client();
    let output = put(&client, "s", entries(500, 7)).await;

    let failed = output.failed_record_count().unwrap_or(0) as usize;
    assert!(
        (100..200).contains(&failed),
        "{failed} of 500 failed at rate 0.3"
    );
    let codes: std::collections::BTreeSet<_> = output
        .records()
        .iter()
        .filter_map(|r| r.error_code())
        .collect();
    assert_eq!(
        codes.into_iter().collect::<Vec<_>>(),
        ["InternalFailure", "ProvisionedThroughputExceededException"]
    );
    let accepted: Vec<String> = entries(500, 7)
        .iter()
        .zip(output.records())
        .filter(|(_, result)| result.error_code().is_none())
        .map(|(entry, _)| String::from_utf8_lossy(entry.data().as_ref()).into_owned())
        .collect();
    let stored: Vec<String> = stub
        .records("s")
        .iter()
        .map(|r| String::from_utf8_lossy(&r.data).into_owned())
        .collect();
    assert_eq!(
        stored, accepted,
        "the stub must store exactly the records it answered as accepted"
    );

    let stats = stub.stats();
    assert_eq!(stats.records_per_request, vec![500]);
    assert_eq!(
        (stats.accepted_records, stats.failed_records),
        ((500 - failed) as u64, failed as u64)
    );

    // Same seed, same faults: fault runs are reproducible.
    let replay = KinesisStub::with_seed(42);
    replay.create_stream("s", 4);
    replay.fail_records(0.3, RecordError::Mixed);
    let again = put(&replay.client(), "s", entries(500, 7)).await;
    assert_eq!(again.failed_record_count(), output.failed_record_count());

    stub.clear_faults();
    let output = put(&client, "s", entries(10, 2)).await;
    assert_eq!(output.failed_record_count(), Some(0));
}

#[tokio::test]
async fn stub_throttles_errors_and_refuses_what_kinesis_refuses() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 1);
    let client = no_retry_client(&stub, None);
    let send = |n| {
        client
            .put_records()
            .stream_name("s")
            .set_records(Some(entries(n, 3)))
            .send()
    };

    stub.throttle_next(2);
    for _ in 0..2 {
        let err = send(5).await.expect_err("throttled").into_service_error();
        assert!(
            err.is_provisioned_throughput_exceeded_exception(),
            "{err:?}"
        );
    }
    stub.server_error_next(1, 503);
    let err = send(5).await.expect_err("503");
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!(
        send(5).await.expect("healthy again").failed_record_count(),
        Some(0)
    );

    let err = send(501)
        .await
        .expect_err("501 records")
        .into_service_error();
    assert_eq!(err.meta().code(), Some("ValidationException"), "{err:?}");
    let err = client
        .put_records()
        .stream_name("nope")
        .set_records(Some(entries(1, 1)))
        .send()
        .await;
    assert!(err
        .expect_err("unknown stream")
        .into_service_error()
        .is_resource_not_found_exception());

    let stats = stub.stats();
    assert_eq!(stats.records_per_request, vec![5, 5, 5, 5, 501, 1]);
    assert_eq!(
        (
            stats.throttled_requests,
            stats.server_errors,
            stats.invalid_requests
        ),
        (2, 1, 1)
    );
    assert_eq!((stats.not_found, stats.accepted_records), (1, 5));
    assert_eq!(stub.record_count("s"), 5);

    // The SDK's own retry treats a whole-request throttle as retryable.
    stub.throttle_next(1);
    assert_eq!(
        put(&stub.client(), "s", entries(2, 1))
            .await
            .failed_record_count(),
        Some(0)
    );
    assert_eq!(stub.stats().throttled_requests, 3);
}

#[tokio::test]
async fn stub_stalls_hold_answers_and_lost_responses_store_records() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 1);
    let client = no_retry_client(&stub, Some(Duration::from_millis(200)));

    stub.stall_for(Duration::from_millis(400), StallMode::LostResponse);
    let err = client
        .put_records()
        .stream_name("s")
        .set_records(Some(entries(3, 1)))
        .send()
        .await;
    assert!(err.is_err(), "the client should time out during the stall");
    assert_eq!(
        stub.record_count("s"),
        3,
        "a lost response still stored its records"
    );

    stub.stall_for(Duration::from_millis(300), StallMode::Unavailable);
    let started = Instant::now();
    let err = no_retry_client(&stub, None)
        .put_records()
        .stream_name("s")
        .set_records(Some(entries(3, 1)))
        .send()
        .await
        .expect_err("503 after the stall");
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(503));
    assert_eq!(
        stub.record_count("s"),
        3,
        "an unavailable stall stores nothing"
    );
    assert_eq!(stub.stats().stalled_requests, 2);
}

#[tokio::test]
async fn stub_answers_the_describe_calls_a_sink_makes() {
    let stub = KinesisStub::start();
    let client = stub.client();
    kinesis::create_stream(&client, "via-sdk", 3).await;
    let shards = client
        .list_shards()
        .stream_name("via-sdk")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(shards.shards().len(), 3);
    let described = client
        .describe_stream()
        .stream_name("via-sdk")
        .send()
        .await
        .expect("DescribeStream");
    assert_eq!(
        described.stream_description().map(|d| d.shards().len()),
        Some(3)
    );
    let arn = described
        .stream_description()
        .map(|d| d.stream_arn().to_string())
        .unwrap_or_default();
    let output = client
        .put_records()
        .stream_arn(arn)
        .set_records(Some(entries(1, 1)))
        .send()
        .await
        .expect("PutRecords by ARN");
    assert_eq!(output.failed_record_count(), Some(0));
    assert_eq!(stub.record_count("via-sdk"), 1);
}

#[tokio::test]
async fn stub_sustains_benchmark_rates() {
    let stub = KinesisStub::start();
    stub.create_stream("bench", 4);
    let client = stub.client();
    let batch = entries(500, 100);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, batch) = (client.clone(), batch.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..25 {
                put(&client, "bench", batch.clone()).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("writer task");
    }
    let elapsed = started.elapsed();
    assert_eq!(stub.record_count("bench"), 50_000);
    let rate = 50_000.0 / elapsed.as_secs_f64();
    eprintln!("stub accepted {rate:.0} records/s (client included)");
    // Generous enough for a debug build on a busy 2-core machine.
    assert!(rate > 10_000.0, "stub too slow: {rate:.0} records/s");
}

#[test]
fn verifier_detects_loss_duplicates_and_reordering() {
    let truth = ground_truth(6, 2); // k0: 0,2,4  k1: 1,3,5
    let clean: Vec<(String, u64)> = vec![
        ("k1", 1),
        ("k0", 0),
        ("k1", 3),
        ("k0", 2),
        ("k0", 4),
        ("k1", 5),
    ]
    .into_iter()
    .map(|(k, i)| (k.to_string(), i))
    .collect();
    let v = verify(&truth, &clean, |r| Some(r.clone()));
    assert_eq!(
        v,
        Verdict {
            committed: 6,
            delivered: 6,
            ..Verdict::default()
        }
    );

    let lost: Vec<_> = clean.iter().filter(|r| r.1 != 2).cloned().collect();
    let v = verify(&truth, &lost, |r| Some(r.clone()));
    assert_eq!(
        (v.lost, v.delivered, v.duplicates, v.order_violations),
        (1, 5, 0, 0),
        "{v}"
    );
    assert!(!v.is_at_least_once_in_order());
    assert!(
        v.examples.iter().any(|e| e.contains("\"k0\", 2) was lost")),
        "{v}"
    );

    // A replayed prefix is a duplicate, not a reordering.
    let mut replay = clean.clone();
    replay.extend([("k0".to_string(), 0), ("k0".to_string(), 2)]);
    let v = verify(&truth, &replay, |r| Some(r.clone()));
    assert_eq!((v.lost, v.duplicates, v.order_violations), (0, 2, 0), "{v}");
    assert!(v.is_at_least_once_in_order() && !v.is_exactly_once_in_order());

    let mut swapped = clean.clone();
    swapped.swap(1, 3); // k0:2 before k0:0
    let v = verify(&truth, &swapped, |r| Some(r.clone()));
    assert_eq!((v.lost, v.duplicates, v.order_violations), (0, 0, 1), "{v}");

    let odd: Vec<Option<(String, u64)>> = vec![None, Some(("k9".to_string(), 9))];
    let v = verify(&truth, &odd, |r| r.clone());
    assert_eq!((v.unparsable, v.unexpected, v.lost), (1, 1, 6), "{v}");
}

#[test]
fn verifier_reads_stub_records_through_an_extractor() {
    let record = |key: &str, data: &str| StubRecord {
        partition_key: key.to_string(),
        data: data.as_bytes().to_vec(),
        shard_id: "shardId-000000000000".to_string(),
        sequence_number: "1".to_string(),
        arrived: Instant::now(),
    };
    let records = vec![record("k0", "k0:0"), record("k0", "garbage")];
    let v = verify(&ground_truth(1, 1), &records, |r: &StubRecord| {
        parse(&r.data)
    });
    assert_eq!((v.delivered, v.unparsable), (1, 1), "{v}");
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
