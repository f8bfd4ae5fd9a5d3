//! Complete and in key order: distinct keys through throttling shards, one hot partition
//! key, KPL aggregates, and a truncate between a table's earlier and later changes.

use crate::support::stub::RecordError;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_keys_arrive_complete_and_in_key_order_through_throttling_shards() {
    let d = Delivery::start("distinct", &table("acct", true), "").await;
    let (sql, truth) = versions("acct", 500, 4);
    d.execute(&sql);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("distinct", &truth, &records);
    let shards = d.stub.shard_stats(&d.stream);
    assert!(
        shards.iter().all(|s| s.accepted_records > 0),
        "distinct keys should spread over all {SHARDS} shards: {shards:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hot_partition_key_arrives_complete_and_in_order() {
    let d = Delivery::start("hot", &table("hot", true), "      partition_key: table\n").await;
    let (sql, truth) = versions("hot", 100, 3);
    d.execute(&sql);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("hot", &truth, &records);
    let keys: std::collections::BTreeSet<_> =
        records.iter().map(|r| r.partition_key.as_str()).collect();
    assert_eq!(
        keys.len(),
        1,
        "partition_key: table makes one key: {keys:?}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kpl_aggregates_carry_every_change_in_key_order() {
    let schema = format!("{}{}", table("agg_hot", false), table("agg_rows", true));
    // Paced at the model's scale: an aggregate carries a hot key's backlog up to the
    // shard's byte allowance, and one larger than the model's shard takes in a second
    // would be throttled each time it is resent.
    let d = Delivery::start(
        "kpl",
        &schema,
        "      aggregation: kpl\n      shard_records_per_sec: 250\n      shard_bytes_per_sec: 262144\n",
    )
    .await;
    let (hot_sql, mut truth) = versions("agg_hot", 300, 3);
    let (rows_sql, rows_truth) = versions("agg_rows", 500, 2);
    d.execute(&hot_sql);
    d.execute(&rows_sql);
    truth.extend(rows_truth);
    let records = d.wait_for(truth.len()).await;
    d.assert_delivered("kpl", &truth, &records);
    let stats = d.stub.stream_stats(&d.stream);
    assert!(
        stats.aggregated_records > 0 && stats.accepted_records < stats.user_records,
        "aggregation: kpl should pack many changes per Kinesis record: {stats:?}"
    );
    // Each change keeps its own partition key inside the aggregate.
    let keys: std::collections::BTreeSet<_> = records
        .iter()
        .filter(|r| r.aggregated)
        .map(|r| r.partition_key.as_str())
        .collect();
    assert!(
        keys.len() > 100,
        "the 500 rows of agg_rows have their own keys, but the aggregates carried {} distinct keys",
        keys.len()
    );
    d.stop().await;
}

/// A TRUNCATE is a barrier for its table, through 30% failed records and the model's
/// throttling, with and without aggregation: it arrives after every earlier change of
/// the table and before every later one, although those changes have other keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncate_arrives_after_the_tables_earlier_changes_and_before_its_later_ones() {
    for (name, extra) in [("trunc", ""), ("trunc_kpl", "      aggregation: kpl\n")] {
        let d = Delivery::start(name, &table("tr", true), extra).await;
        d.stub.fail_records(0.3, RecordError::Mixed);
        d.execute(
            "INSERT INTO tr SELECT g, 0, 'before' FROM generate_series(1, 300) g;\n\
             TRUNCATE tr;\n\
             INSERT INTO tr SELECT g, 1, 'after' FROM generate_series(1, 300) g;",
        );
        let records = d.wait_for(601).await;
        d.stub.fail_records(0.0, RecordError::Mixed);
        let kinds: Vec<(String, String)> = records
            .iter()
            .map(|r| {
                let v: serde_json::Value = serde_json::from_slice(&r.data).unwrap();
                let pad = v["data"]["pad"].as_str().unwrap_or("").to_string();
                (v["kind"].as_str().unwrap_or("").to_string(), pad)
            })
            .collect();
        let truncates: Vec<usize> = (0..kinds.len())
            .filter(|&i| kinds[i].0 == "truncate")
            .collect();
        assert_eq!(
            truncates.len(),
            1,
            "{name}: one truncate arrived: {kinds:?}"
        );
        let at = truncates[0];
        let before = kinds[..at].iter().filter(|k| k.1 == "before").count();
        let after = kinds[at + 1..].iter().filter(|k| k.1 == "after").count();
        assert_eq!(
            before, 300,
            "{name}: every earlier row arrived before the truncate"
        );
        assert_eq!(
            after, 300,
            "{name}: every later row arrived after the truncate"
        );
        assert!(
            kinds[..at].iter().all(|k| k.1 != "after"),
            "{name}: no later row overtook the truncate"
        );
        assert!(
            d.stub.stream_stats(&d.stream).throttled_records + d.stub.stats().failed_records > 0,
            "{name}: the stub failed records on the way"
        );
        d.stop().await;
    }
}
