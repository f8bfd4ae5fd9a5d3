//! The sink's shard map against a real Kinesis emulator: kinesalite routes records by
//! the MD5 of their partition key (or their explicit hash key) like Kinesis, so the
//! shard the map predicts must be the shard that stores each record.

use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use pg_cdc_to_kinesis::sink::kinesis::aggregate::{deaggregate, Aggregator};
use pg_cdc_to_kinesis::sink::kinesis::shards::{hash_key, list_open_shards};

use crate::support::kinesis;

#[tokio::test]
async fn the_shard_map_predicts_the_shard_kinesis_stores_each_key_on() {
    let client = kinesis::kinesalite().client();
    let stream = kinesis::unique_stream_name("shards");
    kinesis::create_stream(&client, &stream, 5).await;

    let map = list_open_shards(&client, &stream)
        .await
        .expect("ListShards");
    assert!(map.is_known(), "kinesalite lists a complete layout");
    assert_eq!(map.shard_count(), 5);

    // Keys as the encoder writes them, some with non-ASCII text.
    let keys: Vec<String> = (0..200)
        .map(|i| format!("public.orders|{i}"))
        .chain((0..50).map(|i| format!("public.kunden|\"Jürgen {i} ✓\"")))
        .collect();
    for batch in keys.chunks(100) {
        let entries = batch
            .iter()
            .map(|k| {
                PutRecordsRequestEntry::builder()
                    .partition_key(k)
                    .data(Blob::new(b"x".to_vec()))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = client
            .put_records()
            .stream_name(&stream)
            .set_records(Some(entries))
            .send()
            .await
            .expect("PutRecords");
        for (key, result) in batch.iter().zip(out.records()) {
            assert_eq!(
                result.shard_id(),
                Some(map.id(map.shard_of(hash_key(key)))),
                "key {key:?}"
            );
        }
    }
    let used: std::collections::HashSet<usize> =
        keys.iter().map(|k| map.shard_of(hash_key(k))).collect();
    assert_eq!(used.len(), 5, "250 keys spread over every shard");
    kinesis::delete_stream(&client, &stream).await;
}

#[tokio::test]
async fn an_aggregate_with_its_shards_explicit_hash_key_lands_on_that_shard() {
    let client = kinesis::kinesalite().client();
    let stream = kinesis::unique_stream_name("shards-agg");
    kinesis::create_stream(&client, &stream, 4).await;
    let map = list_open_shards(&client, &stream)
        .await
        .expect("ListShards");
    for shard in 0..map.shard_count() {
        let ehk = map.explicit_hash_key(shard).expect("known layout");
        let keys: Vec<String> = (0..)
            .map(|i| format!("t|{i}"))
            .filter(|k| map.shard_of(hash_key(k)) == shard)
            .take(20)
            .collect();
        let mut agg = Aggregator::with_explicit_hash_key(&ehk);
        for k in &keys {
            agg.push(k, k.as_bytes());
        }
        let out = client
            .put_records()
            .stream_name(&stream)
            .records(
                PutRecordsRequestEntry::builder()
                    .partition_key(&keys[0])
                    .explicit_hash_key(&ehk)
                    .data(Blob::new(agg.finish()))
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .expect("PutRecords");
        assert_eq!(out.records()[0].shard_id(), Some(map.id(shard)));
    }
    let records = kinesis::read_all(&client, &stream).await;
    let users: usize = records
        .iter()
        .map(|r| {
            deaggregate(&r.partition_key, &r.data)
                .expect("an aggregate")
                .len()
        })
        .sum();
    assert_eq!(users, 4 * 20);
    kinesis::delete_stream(&client, &stream).await;
}
