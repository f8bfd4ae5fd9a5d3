//! Tests of the stub's Kinesis model through the AWS SDK: MD5 routing against the
//! ListShards ranges, per-shard limits and throttles, KPL aggregates counted as one
//! record, concurrent calls under latency, resharding. The delivery tests
//! (`tests/delivery.rs`) and `scripts/bench --kinesis-model` trust these properties.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;
use md5::{Digest, Md5};

use crate::support::kinesis::put;
use crate::support::stub::{kpl_aggregate, KinesisStub};

fn entry(key: &str, data: &[u8], explicit_hash_key: Option<&str>) -> PutRecordsRequestEntry {
    PutRecordsRequestEntry::builder()
        .partition_key(key)
        .data(Blob::new(data))
        .set_explicit_hash_key(explicit_hash_key.map(str::to_string))
        .build()
        .expect("entry has data and key")
}

/// A client that surfaces throttles instead of retrying them away.
fn client(stub: &KinesisStub) -> Client {
    let config = stub
        .sdk_config()
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .build();
    Client::new(&config)
}

/// (shard id, start, end) of the open shards, from ListShards.
async fn ranges(client: &Client, stream: &str) -> Vec<(String, u128, u128)> {
    let out = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .expect("ListShards");
    out.shards()
        .iter()
        .filter(|s| {
            s.sequence_number_range()
                .is_some_and(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| {
            let r = s.hash_key_range().expect("HashKeyRange");
            (
                s.shard_id().to_string(),
                r.starting_hash_key().parse().expect("decimal start"),
                r.ending_hash_key().parse().expect("decimal end"),
            )
        })
        .collect()
}

fn md5_u128(key: &str) -> u128 {
    let mut digest = [0u8; 16];
    digest.copy_from_slice(Md5::digest(key.as_bytes()).as_slice());
    u128::from_be_bytes(digest)
}

fn shard_for(ranges: &[(String, u128, u128)], hash: u128) -> &str {
    ranges
        .iter()
        .find(|(_, s, e)| (*s..=*e).contains(&hash))
        .map(|(id, _, _)| id.as_str())
        .expect("ranges cover the hash space")
}

#[tokio::test]
async fn stub_routes_each_key_by_md5_to_the_shard_listshards_gives_it() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 4);
    let client = client(&stub);
    let ranges = ranges(&client, "s").await;
    assert_eq!(ranges.len(), 4);
    assert_eq!((ranges[0].1, ranges[3].2), (0, u128::MAX));
    let summary = client
        .describe_stream_summary()
        .stream_name("s")
        .send()
        .await
        .expect("DescribeStreamSummary");
    assert_eq!(
        summary
            .stream_description_summary()
            .map(|d| d.open_shard_count()),
        Some(4)
    );

    let keys: Vec<String> = (0..40).map(|i| format!("public.t|{i}")).collect();
    let mut entries: Vec<_> = keys.iter().map(|k| entry(k, b"x", None)).collect();
    entries.push(entry("any", b"explicit", Some(&u128::MAX.to_string())));
    let out = put(&client, "s", entries).await;
    for (key, result) in keys.iter().zip(out.records()) {
        assert_eq!(
            result.shard_id(),
            Some(shard_for(&ranges, md5_u128(key))),
            "key {key}"
        );
        assert_eq!(stub.shard_of("s", key).as_deref(), result.shard_id());
    }
    assert_eq!(out.records()[40].shard_id(), Some(ranges[3].0.as_str()));
    let used: std::collections::BTreeSet<_> =
        out.records().iter().filter_map(|r| r.shard_id()).collect();
    assert_eq!(used.len(), 4, "40 keys should reach all 4 shards: {used:?}");
}

#[tokio::test]
async fn stub_limits_throttle_per_shard_and_count_an_aggregate_as_one_record() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 4);
    stub.set_shard_limits(10, 1024 * 1024);
    let client = client(&stub);
    // Two keys on different shards.
    let hot = "hot";
    let cold = (0..)
        .map(|i| format!("cold{i}"))
        .find(|k| stub.shard_of("s", k) != stub.shard_of("s", hot))
        .expect("some key lands elsewhere");
    let mut entries: Vec<_> = (0..30)
        .map(|i| entry(hot, format!("{i}").as_bytes(), None))
        .collect();
    entries.extend((0..5).map(|i| entry(&cold, format!("{i}").as_bytes(), None)));
    let out = put(&client, "s", entries).await;
    assert_eq!(out.failed_record_count(), Some(20));
    assert!(out.records()[..10].iter().all(|r| r.error_code().is_none()));
    assert!(out.records()[10..30]
        .iter()
        .all(|r| r.error_code() == Some("ProvisionedThroughputExceededException")));
    assert!(out.records()[30..].iter().all(|r| r.error_code().is_none()));
    assert_eq!(
        stub.record_count("s"),
        15,
        "throttled records are not stored"
    );

    // 200 user records in one aggregate: one record against the limit of the cold
    // shard (5 of 10 used), explicit hash key routing it there.
    let cold_shard = stub.shard_of("s", &cold).expect("shard");
    let inner: Vec<Vec<u8>> = (0..200).map(|i| format!("u{i}").into_bytes()).collect();
    let members: Vec<(&str, &[u8])> = inner
        .iter()
        .map(|d| (cold.as_str(), d.as_slice()))
        .collect();
    let aggregate = kpl_aggregate(&members);
    let hash = md5_u128(&cold).to_string();
    let out = put(&client, "s", vec![entry("agg", &aggregate, Some(&hash))]).await;
    assert_eq!(out.failed_record_count(), Some(0));
    assert_eq!(out.records()[0].shard_id(), Some(cold_shard.as_str()));

    let stats = stub.stats();
    assert_eq!(
        (
            stats.accepted_records,
            stats.throttled_records,
            stats.user_records,
            stats.aggregated_records
        ),
        (16, 20, 215, 1)
    );
    let shard = stub
        .shard_stats("s")
        .into_iter()
        .find(|s| s.shard_id == cold_shard)
        .expect("cold shard");
    assert_eq!(
        (shard.accepted_records, shard.accepted_user_records),
        (6, 205)
    );
    let users = stub.user_records("s");
    assert_eq!(users.len(), 215);
    assert!(users[15..]
        .iter()
        .all(|u| u.aggregated && u.partition_key == cold));
    assert_eq!(users[214].data, b"u199");
}

#[tokio::test]
async fn stub_throttles_one_shard_on_request_and_leaves_the_others_alone() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 4);
    let client = client(&stub);
    let first = stub.open_shards("s")[0].clone();
    stub.throttle_shard("s", 0, Duration::from_millis(400));
    let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
    let entries = || {
        keys.iter()
            .map(|k| entry(k, b"x", None))
            .collect::<Vec<_>>()
    };
    let out = put(&client, "s", entries()).await;
    for (key, result) in keys.iter().zip(out.records()) {
        let on_first = stub.shard_of("s", key).as_deref() == Some(first.as_str());
        assert_eq!(
            result.error_code().is_some(),
            on_first,
            "key {key}: {result:?}"
        );
    }
    let stats = stub.shard_stats("s");
    assert!(stats[0].throttled_records > 0);
    assert!(stats[1..]
        .iter()
        .all(|s| s.accepted_during_other_throttle == s.accepted_records && s.accepted_records > 0));
    tokio::time::sleep(Duration::from_millis(450)).await;
    assert_eq!(
        put(&client, "s", entries()).await.failed_record_count(),
        Some(0)
    );
}

#[tokio::test]
async fn stub_latency_holds_each_call_without_serialising_them() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 1);
    // One by one, the calls would take 4 s: the bound leaves 2.5 s for a busy machine.
    stub.set_latency(Duration::from_secs(1));
    let client = client(&stub);
    let started = Instant::now();
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                put(&client, "s", vec![entry(&format!("k{i}"), b"x", None)]).await
            })
        })
        .collect();
    for c in calls {
        c.await.expect("call");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        took < Duration::from_millis(3_500),
        "4 calls of 1 s took {took:?}: served one by one?"
    );
}

#[tokio::test]
async fn stub_reshard_closes_the_shards_and_routes_to_new_ones() {
    let stub = KinesisStub::start();
    stub.create_stream("s", 2);
    let client = client(&stub);
    put(&client, "s", vec![entry("a", b"1", None)]).await;
    stub.reshard("s", 3);
    let open = ranges(&client, "s").await;
    let ids: Vec<&str> = open.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "shardId-000000000002",
            "shardId-000000000003",
            "shardId-000000000004"
        ]
    );
    let all = client
        .list_shards()
        .stream_name("s")
        .send()
        .await
        .expect("ListShards");
    assert_eq!(all.shards().len(), 5, "closed shards are still listed");
    let out = put(&client, "s", vec![entry("a", b"2", None)]).await;
    assert_eq!(
        out.records()[0].shard_id(),
        Some(shard_for(&open, md5_u128("a")))
    );
}
