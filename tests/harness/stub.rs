//! The scripted Kinesis stub does what the fault tests count on: failures at the asked
//! rate storing only accepted records, throttles, errors, stalls, lost responses, the
//! describe calls a sink makes, and benchmark rates.

use std::time::{Duration, Instant};

use crate::support::kinesis::{self, put};
use crate::support::stub::{KinesisStub, RecordError, StallMode};

use super::*;

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
