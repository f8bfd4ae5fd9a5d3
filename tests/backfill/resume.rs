//! A snapshot under faults: killed twice it resumes from its last accepted chunk
//! (checkpoints in moto's SSM), and Kinesis throttling loses nothing.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use serde_json::Value;

use crate::support::case::drop_slot;
use crate::support::kinesis::{self, kinesalite, ReadRecord};

use super::*;

/// The checkpoint's backfill progress: table → chunks accepted.
async fn checkpointed_chunks(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> (BTreeMap<String, u64>, bool) {
    let Ok(out) = ssm.get_parameter().name(parameter).send().await else {
        return (BTreeMap::new(), false);
    };
    let text = out.parameter().and_then(|p| p.value()).unwrap_or("{}");
    let v: Value = serde_json::from_str(text).unwrap();
    let b = &v["backfill"];
    let mut out = BTreeMap::new();
    for job in b["jobs"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(b["last"].as_object().map(|_| &b["last"]))
    {
        for t in job["tables"].as_array().into_iter().flatten() {
            out.insert(
                t["table"].as_str().unwrap().to_string(),
                t["chunks"].as_u64().unwrap_or(0),
            );
        }
    }
    (out, b["snapshot_done"] == Value::Bool(true))
}

/// `(table, chunk)` of every read record in the stream, with its count.
async fn chunk_reads(f: &Fixture) -> BTreeMap<(String, u64), u64> {
    let records = kinesis::read_all(&kinesalite().client(), &f.stream).await;
    replay(&user_records(&records)).chunks
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_snapshot_killed_twice_resumes_from_its_last_accepted_chunk() {
    use crate::support::process::Streamer;
    const ROWS: i64 = 20_000;
    const CHUNK: u64 = 1_000;
    let m = crate::support::moto::shared();
    let f = Fixture::new("snap_kill", &["k1", "k2"], ROWS).await;
    let parameter = format!("/test/{}/checkpoint", f.slot);
    let (_, dir) = f.config(&format!(
        "      snapshot: initial\n      snapshot_chunk_rows: {CHUNK}\n      snapshot_max_rows_per_sec: 2500\n      checkpoint_parameter: {parameter}\n      checkpoint_interval_secs: 1\n"
    ));
    let path = dir.path().join("configs.yml");
    let env = [("AWS_ENDPOINT_URL_KINESIS", kinesalite().endpoint.as_str())];
    let ssm = aws_sdk_ssm::Client::new(&m.sdk_config());
    let load = Load::start(&f, ROWS).await;

    let mut resumed_at = Vec::new();
    for kill in 0..2 {
        let mut streamer = Streamer::start_with_env(&m.endpoint, &path, &env);
        // Kill once a few more chunks than before were checkpointed.
        let before: u64 = checkpointed_chunks(&ssm, &parameter).await.0.values().sum();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let now: u64 = checkpointed_chunks(&ssm, &parameter).await.0.values().sum();
            if now >= before + 3 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no progress before kill {kill}: {}",
                streamer.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        streamer.signal(libc::SIGKILL);
        let _ = streamer.wait_exit(Duration::from_secs(10));
        let (at_kill, finished) = checkpointed_chunks(&ssm, &parameter).await;
        assert!(
            !finished,
            "the snapshot ended before kill {kill}: make it slower"
        );
        resumed_at.push((at_kill, chunk_reads(&f).await));
    }
    let mut streamer = Streamer::start_with_env(&m.endpoint, &path, &env);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !checkpointed_chunks(&ssm, &parameter).await.1 {
        assert!(
            Instant::now() < deadline,
            "the snapshot did not finish: {}",
            streamer.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let statements = load.finish().await;
    assert!(
        statements > 100,
        "the workload ran during the snapshot ({statements})"
    );
    let (r, diff) = settled(&f).await;
    streamer.signal(libc::SIGTERM);
    let _ = streamer.wait_exit(Duration::from_secs(30));
    drop_slot(&f.db, &f.slot);
    assert_consistent(&r, &diff, "snapshot killed twice");

    // After each kill, no chunk at or below the checkpointed one was read again; at
    // most the chunks in flight when it died were.
    let mut later = r.chunks.clone();
    for (i, (at_kill, before)) in resumed_at.iter().enumerate().rev() {
        for ((table, chunk), n) in &later {
            let was = before.get(&(table.clone(), *chunk)).copied().unwrap_or(0);
            if *n > was {
                let accepted = at_kill.get(table).copied().unwrap_or(0);
                assert!(
                    *chunk > accepted,
                    "kill {i}: {table} chunk {chunk} read again though the checkpoint held {accepted} chunks"
                );
            }
        }
        later = before.clone();
    }
    let again: u64 = r
        .chunks
        .values()
        .filter(|n| **n > 0)
        .map(|n| n.saturating_sub(CHUNK))
        .sum();
    let total: u64 = r.chunks.values().sum();
    eprintln!("snapshot killed twice: resumed at {:?}; {total} read records for {} rows, {again} sent twice", resumed_at.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(), 2 * ROWS);
    assert!(
        total < 2 * ROWS as u64 + 2 * 3 * CHUNK * 2,
        "{total} read records: the snapshot started over instead of resuming"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kinesis_throttling_during_a_backfill_loses_nothing_and_keeps_key_order() {
    use crate::support::stub::{KinesisStub, RecordError};
    const ROWS: i64 = 5_000;
    let f = Fixture::new("snap_throttle", &["h1", "h2"], ROWS).await;
    let stub = KinesisStub::with_seed(0xbf11);
    stub.create_stream(&f.stream, 2);
    let (config, _dir) = f.config(
        "      snapshot: initial\n      snapshot_chunk_rows: 500\n      checkpoint: false\n",
    );
    // Partial failures, whole-request throttles and one shard throttled outright.
    stub.fail_records(0.3, RecordError::Throughput);
    stub.throttle_next(5);
    stub.throttle_shard(&f.stream, 0, Duration::from_secs(3));
    let pipeline = Pipeline::start(
        &config,
        &RunEnv {
            aws: stub.sdk_config(),
        },
    );
    let load = Load::start(&f, ROWS).await;
    wait_backfilled(&pipeline, Duration::from_secs(240)).await;
    let statements = load.finish().await;
    assert!(
        statements > 100,
        "the workload ran during the backfill ({statements})"
    );
    let (r, diff) = settled_from(&f, || async {
        let records: Vec<ReadRecord> = stub
            .records(&f.stream)
            .into_iter()
            .map(|s| ReadRecord {
                partition_key: s.partition_key,
                data: s.data,
                shard_id: s.shard_id,
                sequence_number: s.sequence_number,
            })
            .collect();
        user_records(&records)
    })
    .await;
    let throttled = pipeline.slots[0]
        .stats
        .throttled_records
        .load(Ordering::Relaxed);
    pipeline.stop();
    pipeline.wait().await.unwrap();
    drop_slot(&f.db, &f.slot);
    eprintln!(
        "backfill under throttling: {} reads, {} changes, {throttled} records throttled",
        r.reads, r.changes
    );
    assert!(throttled > 0, "the stub throttled");
    assert_consistent(&r, &diff, "backfill under throttling");
}
