//! The startup rules: a dropped slot with a checkpoint refuses to start unless accepted,
//! and a slot behind its checkpoint warns and streams without moving it back.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pg_cdc_to_kinesis::checkpoint::{Checkpoint, CheckpointStore, SsmStore};
use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::pipeline::SlotState;

use crate::support::case::wait_state;
use crate::support::kinesis::{self, kinesalite};
use crate::support::moto;
use crate::support::pg;

use super::*;

/// Streams, stops cleanly (final checkpoint), then loses the slot.
async fn checkpoint_then_lose_slot(f: &Fixture, store: &Arc<SsmStore>) -> Lsn {
    let p = f.start("", store);
    wait_streaming(&p).await;
    f.insert(1, 5);
    f.delivered(5).await;
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert!(cp.is_final);
    f.drop_slot();
    f.insert(6, 10); // never decoded: the gap
    cp.lsn().unwrap()
}

async fn refused(f: &Fixture, store: &Arc<SsmStore>, checkpoint: Lsn) -> String {
    let p = f.start("", store);
    let state = wait_state(&p.slots[0], STATE_TIMEOUT, |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    let SlotState::Stopped { error } = state else {
        panic!("the slot started despite the gap: {state:?}")
    };
    assert!(p.wait().await.is_err(), "no slot is left running");
    let checkpoint = checkpoint.to_string();
    for want in [
        checkpoint.as_str(),
        f.parameter.as_str(),
        "accept_checkpoint_gap: true",
        "backfill",
    ] {
        assert!(error.contains(want), "{want:?} missing from: {error}");
    }
    error
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_slot_with_a_checkpoint_refuses_to_start_unless_accepted() {
    let store = ssm_store(moto::shared());
    let f = Fixture::new("cp_gap").await;
    let checkpoint = checkpoint_then_lose_slot(&f, &store).await;

    // Missing: refused before creating it, so the refusal holds on every restart.
    let error = refused(&f, &store, checkpoint).await;
    assert!(error.contains("does not exist"), "{error}");
    assert_eq!(f.slot_lsn().await, None, "the slot was not created");

    // Re-created by an operator (at the current WAL): ahead of a final checkpoint.
    pg::shared().execute(
        &f.db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'wal2json')",
            f.slot
        ),
    );
    let recreated = f.slot_lsn().await.unwrap();
    let error = refused(&f, &store, checkpoint).await;
    assert!(error.contains(&recreated.to_string()), "{error}");

    // Accepted: streams, counts the gap, and checkpoints the new slot.
    let p = f.start("      accept_checkpoint_gap: true\n", &store);
    wait_streaming(&p).await;
    assert_eq!(
        p.slots[0].checkpoint.gaps_accepted.load(Ordering::Relaxed),
        1
    );
    f.insert(11, 12);
    let records = kinesis::read_until(
        &kinesalite().client(),
        &f.stream,
        7,
        Duration::from_secs(60),
    )
    .await;
    let ids: Vec<i64> = records
        .iter()
        .filter_map(|r| r.json().ok()?["data"]["id"].as_i64())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 11, 12], "rows 6..10 fell into the gap");
    let cp = wait_checkpoint(&f, &store, recreated).await;
    assert!(cp.lsn().unwrap() >= recreated);
    p.stop();
    p.wait().await.unwrap();
    // Consistent again: a plain restart starts.
    let p = f.start("", &store);
    wait_streaming(&p).await;
    p.stop();
    p.wait().await.unwrap();
    f.drop_slot();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slot_behind_the_checkpoint_warns_and_streams_without_moving_it_back() {
    let store = ssm_store(moto::shared());
    let f = Fixture::new("cp_behind").await;
    pg::shared().execute(
        &f.db,
        &format!(
            "SELECT pg_create_logical_replication_slot('{}', 'wal2json')",
            f.slot
        ),
    );
    let ahead = Lsn(f.slot_lsn().await.unwrap().0 + (1 << 32));
    let planted = Checkpoint {
        lsn: ahead.to_string(),
        slot: f.slot.clone(),
        stream: f.stream.clone(),
        database: f.db.clone(),
        time: "2020-01-01T00:00:00Z".into(),
        is_final: true,
        dropped: false,
        backfill: None,
    };
    store.write(&f.parameter, &planted).await.unwrap();
    let p = f.start("      checkpoint_interval_secs: 1\n", &store);
    wait_streaming(&p).await;
    f.insert(1, 20);
    f.delivered(20).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.stop();
    p.wait().await.unwrap();
    let cp = store.read(&f.parameter).await.unwrap().unwrap();
    assert_eq!(cp.lsn(), Some(ahead), "a checkpoint never moves backwards");
    f.drop_slot();
}
