//! Unit tests of the checkpoint writer against the in-memory store: the confirmation
//! limit after a final checkpoint, and the backfill state loaded once and held until
//! stored.

use super::*;
use tokio::time::Instant;

use crate::checkpoint::{now_rfc3339, Checkpoint, MemoryStore};
use crate::config::Config;

fn slot_config() -> SlotConfig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    std::fs::write(
        &path,
        "replication_slots:\n  - s1:\n      host: 127.0.0.1\n      user: u\n      db_name: d\n      kns_stream: st\n      checkpoint_interval_secs: 1\n",
    )
    .unwrap();
    Config::load(&path).unwrap().slots.remove(0)
}

fn stored(lsn: Lsn, is_final: bool) -> Checkpoint {
    Checkpoint {
        lsn: lsn.to_string(),
        slot: "s1".into(),
        stream: "st".into(),
        database: "d".into(),
        time: now_rfc3339(),
        is_final,
        dropped: false,
        backfill: None,
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn after_a_final_checkpoint_nothing_past_it_is_confirmed_until_a_non_final_one_is_stored() {
    let slot = slot_config();
    let at = Lsn(0x1000);
    let store = Arc::new(MemoryStore::default());
    store
        .write(&slot.checkpoint.parameter, &stored(at, true))
        .await
        .unwrap();
    let stats = Arc::new(CheckpointStats::default());
    let cp = Checkpointer::with_store(&slot, store.clone(), stats.clone());
    cp.verify_start(SlotSeen::At(at)).await.unwrap();
    // SSM fails before the writer's first attempt (it has not run yet).
    store.set_failing(true);
    assert_eq!(cp.confirm_limit(), Some(at));
    wait_for("a failed write", || {
        stats.write_failures.load(Ordering::Relaxed) > 0
    })
    .await;
    assert_eq!(cp.confirm_limit(), Some(at), "still final in the store");
    store.set_failing(false);
    wait_for("the limit to lift", || cp.confirm_limit().is_none()).await;
    let last = store.writes().pop().unwrap();
    assert_eq!((last.lsn(), last.is_final), (Some(at), false));
}

#[tokio::test]
async fn backfill_state_is_loaded_once_and_a_request_holds_confirmation_until_stored() {
    use crate::checkpoint::backfill::{BackfillJob, TableProgress};
    let slot = slot_config();
    let store = Arc::new(MemoryStore::default());
    let mut planted = stored(Lsn(0x100), false);
    let mut state = BackfillState::default();
    state.add(BackfillJob {
        id: "a".into(),
        initial: true,
        filter: None,
        tables: vec![TableProgress::new("public.t")],
    });
    planted.backfill = Some(state.clone());
    store
        .write(&slot.checkpoint.parameter, &planted)
        .await
        .unwrap();
    let stats = Arc::new(CheckpointStats::default());
    let cp = Checkpointer::with_store(&slot, store.clone(), stats.clone());
    // Unreadable: the state is unknown (no snapshot may be assumed missing).
    store.set_failing(true);
    cp.verify_start(SlotSeen::At(Lsn(0x100))).await.unwrap();
    assert!(!cp.backfill_known());
    store.set_failing(false);
    cp.verify_start(SlotSeen::At(Lsn(0x100))).await.unwrap();
    assert!(cp.backfill_known());
    assert_eq!(*cp.backfill().lock().unwrap(), state);
    // A request at 0x180: nothing past it is confirmed until a checkpoint holding
    // it is stored.
    cp.backfill().lock().unwrap().add(BackfillJob {
        id: "b".into(),
        initial: false,
        filter: None,
        tables: vec![TableProgress::new("public.u")],
    });
    cp.hold(Lsn(0x180));
    assert_eq!(cp.confirm_limit(), Some(Lsn(0x180)));
    cp.confirmed(Lsn(0x180));
    wait_for("the limit to lift", || cp.confirm_limit().is_none()).await;
    let last = store.writes().pop().unwrap();
    let jobs: Vec<String> = last
        .backfill
        .unwrap()
        .jobs
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(jobs, ["a", "b"], "the stored checkpoint holds the request");
}

#[tokio::test]
async fn a_non_final_checkpoint_or_none_limits_nothing() {
    let slot = slot_config();
    let store = Arc::new(MemoryStore::default());
    let stats = Arc::new(CheckpointStats::default());
    let cp = Checkpointer::with_store(&slot, store.clone(), stats.clone());
    cp.verify_start(SlotSeen::At(Lsn(5))).await.unwrap();
    assert_eq!(cp.confirm_limit(), None, "no checkpoint");
    store
        .write(&slot.checkpoint.parameter, &stored(Lsn(5), false))
        .await
        .unwrap();
    cp.verify_start(SlotSeen::At(Lsn(9))).await.unwrap();
    assert_eq!(cp.confirm_limit(), None, "non-final");
}
