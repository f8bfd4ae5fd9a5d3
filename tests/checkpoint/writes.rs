//! What is written and when: checkpoints follow delivery and never pass the slot, writes
//! are rate limited with one more on shutdown, and an SSM outage does not stop streaming.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::checkpoint::CheckpointStore;
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::SlotState;

use crate::support::kinesis::{self, kinesalite};
use crate::support::moto::{self, Moto};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_follow_delivery_and_never_pass_the_slot() {
    let m = moto::shared();
    let store = ssm_store(m);
    let f = Fixture::new("cp_follow").await;
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    for round in 0..3 {
        f.insert(round * 10 + 1, round * 10 + 10);
        let commit = f.delivered((round as usize + 1) * 10).await;
        let cp = wait_checkpoint(&f, &store, commit).await;
        assert_eq!(
            (cp.slot.as_str(), cp.stream.as_str(), cp.database.as_str()),
            (f.slot.as_str(), f.stream.as_str(), f.db.as_str())
        );
        assert!(!cp.is_final);
        assert!(
            cp.time.ends_with('Z') && cp.time.contains('T'),
            "{}",
            cp.time
        );
    }
    assert!(p.slots[0].checkpoint.age().unwrap() < Duration::from_secs(30));
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final, "shutdown writes a final checkpoint: {cp:?}");
    assert_eq!(
        cp.lsn(),
        f.slot_lsn().await,
        "the final checkpoint is the slot's position"
    );
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_are_rate_limited_with_one_more_on_shutdown() {
    let m = moto::shared();
    let store = ssm_store(m);
    let f = Fixture::new("cp_rate").await;
    let p = f.start("      checkpoint_interval_secs: 60\n", &store);
    wait_streaming(&p).await;
    // The new slot's position is written at once; the interval starts there.
    wait_checkpoint(&f, &store, Lsn(1)).await;
    for i in 0..5 {
        f.insert(i * 10 + 1, i * 10 + 10);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let commit = f.delivered(50).await;
    // Wait until PostgreSQL has the confirmation (status updates every second).
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.slot_lsn().await.unwrap_or_default() <= commit {
        assert!(Instant::now() < deadline, "slot never confirmed {commit}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        version(m, &f.parameter).await,
        Some(1),
        "five transactions inside the interval: no second write"
    );
    p.stop();
    p.wait().await.unwrap();
    assert_eq!(
        version(m, &f.parameter).await,
        Some(2),
        "one more write on shutdown"
    );
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final && cp.lsn().unwrap() > commit, "{cp:?}");
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssm_outage_does_not_stop_streaming() {
    let m = Moto::start().expect("moto");
    let store = ssm_store(&m);
    let f = Fixture::new("cp_outage").await;
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    f.insert(1, 10);
    let commit = f.delivered(10).await;
    wait_checkpoint(&f, &store, commit).await;

    m.stop();
    let status = p.slots[0].clone();
    for i in 0..5 {
        f.insert(11 + i * 10, 20 + i * 10);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let commit = f.delivered(60).await;
    assert_eq!(status.state(), SlotState::Streaming);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status.checkpoint.write_failures.load(Ordering::Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "no write was attempted during the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        status.checkpoint.last_lsn().unwrap() < commit,
        "nothing written while down"
    );

    let outage = Instant::now();
    m.start_again().unwrap();
    f.insert(61, 61);
    let commit = f.delivered(61).await;
    let cp = wait_checkpoint(&f, &store, commit).await;
    let recover = outage.elapsed();
    assert_eq!(cp.slot, f.slot);
    assert_eq!(status.state(), SlotState::Streaming);
    // Every committed row is on the stream, in order (one key per row, ids ascending).
    let records = kinesis::read_all(&kinesalite().client(), &f.stream).await;
    let expected: Vec<(u64, u64)> = (1..=61).map(|id| (id, id)).collect();
    let verdict = kinesis::verify(&expected, &records, |r| {
        let id = r.json().ok()?["data"]["id"].as_u64()?;
        Some((id, id))
    });
    eprintln!(
        "fault-suite ssm_outage: committed={} delivered={} lost={} duplicates={} order_violations={} recover={:.2}",
        verdict.committed, verdict.delivered, verdict.lost, verdict.duplicates, verdict.order_violations, recover.as_secs_f64()
    );
    verdict.assert_at_least_once_in_order();
    p.stop();
    p.wait().await.unwrap();
    f.drop_slot();
}
