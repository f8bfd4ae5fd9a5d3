//! The per-slot checkpoint writer: a background task fed through a watch channel.
//!
//! Owns the rate limit (one write per `checkpoint_interval_secs`), the backoff while
//! the store fails, the final write on shutdown, and the confirmation limit after a
//! start at a final checkpoint. The replication loop only calls
//! [`Checkpointer::confirmed`] and [`Checkpointer::confirm_limit`], which never wait;
//! nothing here can stop streaming.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::backfill::BackfillState;
use super::startup::{self, CheckpointGap, SlotSeen};
use super::{
    now_rfc3339, ssm_client, Checkpoint, CheckpointError, CheckpointStats, CheckpointStore,
    Progress, SsmStore,
};
use crate::config::SlotConfig;
use crate::lsn::Lsn;

/// Failed writes are retried after the interval, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Shutdown waits at most this long for the final write (ECS stops tasks after 30 s).
const FINAL_WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// `limit` when nothing limits confirmation.
const NO_LIMIT: u64 = u64::MAX;

/// What the slot needs from its config, copied so the task owns it.
#[derive(Debug, Clone)]
struct Target {
    parameter: String,
    slot: String,
    stream: String,
    database: String,
    interval: Duration,
    accept_gap: bool,
}

/// The slot's backfill progress, shared by the reader (signals), the backfill task
/// (chunks) and the writer (which stores it with the next checkpoint). Kept in
/// memory when checkpoints are off.
pub type SharedBackfill = Arc<Mutex<BackfillState>>;

/// A slot's checkpoints. Cheap to call from the replication loop; a no-op when
/// checkpoints are disabled.
#[derive(Debug)]
pub struct Checkpointer {
    inner: Option<Inner>,
    backfill: SharedBackfill,
    /// The stored backfill state was loaded (once per process).
    loaded: AtomicBool,
    /// The last `verify_start` accepted a gap.
    gap_accepted: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    target: Target,
    store: Arc<dyn CheckpointStore>,
    stats: Arc<CheckpointStats>,
    /// The highest LSN confirmed to PostgreSQL.
    confirmed: watch::Sender<Progress>,
    /// The highest LSN the store holds (written, or read at startup).
    stored: Arc<AtomicU64>,
    /// While the store holds a final checkpoint, its LSN: nothing past it may be
    /// confirmed to PostgreSQL until a non-final checkpoint replaced it. `NO_LIMIT`
    /// otherwise.
    limit: Arc<AtomicU64>,
    /// Bumped by each [`Checkpointer::hold`]: a write lifts the limit only when
    /// no hold came after the state it wrote was read.
    holds: Arc<AtomicU64>,
    /// Bumped when the backfill state changed, so the writer stores it.
    changes: watch::Sender<u64>,
    finals: mpsc::Sender<oneshot::Sender<Result<(), CheckpointError>>>,
}

impl Checkpointer {
    /// Checkpoints for `slot` in SSM (a no-op when `checkpoint: false`). Spawns the
    /// writer on the current runtime; it ends when this is dropped.
    pub fn start(
        slot: &SlotConfig,
        aws: &aws_config::SdkConfig,
        stats: Arc<CheckpointStats>,
    ) -> Checkpointer {
        if !slot.checkpoint.enabled {
            return Checkpointer::disabled();
        }
        let store = SsmStore::new(ssm_client(aws, slot.region.as_deref()));
        Self::with_store(slot, Arc::new(store), stats)
    }

    /// Checkpoints for `slot` in `store` (tests use [`super::MemoryStore`]).
    pub fn with_store(
        slot: &SlotConfig,
        store: Arc<dyn CheckpointStore>,
        stats: Arc<CheckpointStats>,
    ) -> Checkpointer {
        if !slot.checkpoint.enabled {
            return Checkpointer::disabled();
        }
        let target = Target {
            parameter: slot.checkpoint.parameter.clone(),
            slot: slot.name.clone(),
            stream: slot.kns_stream.clone(),
            database: slot.db_name.clone(),
            interval: Duration::from_secs(slot.checkpoint.interval_secs.max(1)),
            accept_gap: slot.checkpoint.accept_gap,
        };
        let (confirmed, rx) = watch::channel(Progress::default());
        let (finals, finals_rx) = mpsc::channel(1);
        let stored = Arc::new(AtomicU64::new(0));
        let limit = Arc::new(AtomicU64::new(NO_LIMIT));
        let holds = Arc::new(AtomicU64::new(0));
        let (changes, changes_rx) = watch::channel(0);
        let backfill = SharedBackfill::default();
        let task = Task {
            target: target.clone(),
            store: store.clone(),
            stats: stats.clone(),
            stored: stored.clone(),
            limit: limit.clone(),
            holds: holds.clone(),
            backfill: backfill.clone(),
        };
        tokio::spawn(task.run(rx, changes_rx, finals_rx));
        Checkpointer {
            inner: Some(Inner {
                target,
                store,
                stats,
                confirmed,
                stored,
                limit,
                holds,
                changes,
                finals,
            }),
            backfill,
            loaded: AtomicBool::new(false),
            gap_accepted: AtomicBool::new(false),
        }
    }

    fn disabled() -> Checkpointer {
        Checkpointer {
            inner: None,
            backfill: SharedBackfill::default(),
            loaded: AtomicBool::new(true),
            gap_accepted: AtomicBool::new(false),
        }
    }

    /// The slot's backfill state (loaded from the checkpoint by `verify_start`).
    pub fn backfill(&self) -> SharedBackfill {
        self.backfill.clone()
    }

    /// The backfill state changed: store it with the next write.
    pub fn backfill_changed(&self) {
        if let Some(inner) = &self.inner {
            inner.changes.send_modify(|n| *n += 1);
        }
    }

    /// A backfill request was taken at `lsn`: confirm nothing past it until a
    /// checkpoint that holds the request is stored, or a crash in between would
    /// skip the request (PostgreSQL does not send it again) and lose it.
    pub fn hold(&self, lsn: Lsn) {
        if let Some(inner) = &self.inner {
            inner.holds.fetch_add(1, Ordering::AcqRel);
            inner.limit.fetch_min(lsn.0, Ordering::AcqRel);
            inner.changes.send_modify(|n| *n += 1);
        }
    }

    /// Whether the backfill state is known: read from the store (or held in memory
    /// when checkpoints are off). False while the store could not be read.
    pub fn backfill_known(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    /// Whether the last start went ahead over a checkpoint gap the config accepts.
    pub fn gap_accepted(&self) -> bool {
        self.gap_accepted.load(Ordering::Relaxed)
    }

    /// `lsn` was confirmed to PostgreSQL (sent in a standby status update). Never waits.
    pub fn confirmed(&self, lsn: Lsn) {
        if let Some(inner) = &self.inner {
            inner.confirmed.send_if_modified(|p| p.advance(lsn));
        }
    }

    /// Compare the stored checkpoint with the slot before streaming (see [`startup`]).
    /// Err only for a gap the config does not accept; an unreadable store only warns.
    pub async fn verify_start(&self, seen: SlotSeen) -> Result<(), CheckpointGap> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let t = &inner.target;
        let checkpoint = match inner.store.read(&t.parameter).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(slot = %t.slot, "cannot read the checkpoint, so a lost or re-created slot cannot be detected on this start; streaming anyway: {e}");
                return Ok(());
            }
        };
        let decision = startup::decide(checkpoint.as_ref(), seen);
        let outcome = startup::apply(&t.slot, &t.parameter, decision, t.accept_gap);
        self.gap_accepted.store(false, Ordering::Relaxed);
        if !self.loaded.swap(true, Ordering::Relaxed) {
            if let Some(state) = checkpoint.as_ref().and_then(|c| c.backfill.clone()) {
                if let Ok(mut shared) = self.backfill.lock() {
                    *shared = state;
                }
            }
        }
        if outcome.is_ok() {
            if let startup::Decision::Gap { .. } = decision {
                self.gap_accepted.store(true, Ordering::Relaxed);
                inner.stats.gaps_accepted.fetch_add(1, Ordering::Relaxed);
            } else if let Some(cp) = checkpoint.as_ref() {
                if let Some(at) = cp.lsn() {
                    // Past a final checkpoint the slot may move only once a non-final
                    // one is stored: a crash or a failed write in between would
                    // otherwise look like a gap on the next start. The writer
                    // rewrites `at` as non-final at once and then lifts the limit.
                    let limit = if cp.binds_the_slot() { at.0 } else { NO_LIMIT };
                    inner.limit.store(limit, Ordering::Release);
                    // Never write below what the store already holds.
                    inner.stored.fetch_max(at.0, Ordering::Relaxed);
                    self.confirmed(at);
                }
            }
        }
        outcome
    }

    /// Shutdown, after the final standby status update confirmed `lsn`: write it now,
    /// marked final, waiting a few seconds at most.
    pub async fn finish(&self, lsn: Lsn) {
        let Some(inner) = &self.inner else {
            return;
        };
        self.confirmed(lsn);
        let (reply, done) = oneshot::channel();
        let sent = inner.finals.send(reply).await.is_ok();
        let result = match tokio::time::timeout(FINAL_WRITE_TIMEOUT, done).await {
            Ok(Ok(r)) if sent => r,
            _ => Err(CheckpointError::Store {
                name: inner.target.parameter.clone(),
                message: format!("the final write did not finish within {FINAL_WRITE_TIMEOUT:?}; check that SSM is reachable"),
            }),
        };
        let at = inner.confirmed.borrow().get();
        match result {
            Ok(()) => {
                tracing::info!(slot = %inner.target.slot, lsn = %at, "final checkpoint {at} written to {}", inner.target.parameter)
            }
            Err(e) => {
                tracing::warn!(slot = %inner.target.slot, lsn = %at, "final checkpoint not written; the slot itself is confirmed at {at}: {e}")
            }
        }
    }

    /// The highest position that may be confirmed to PostgreSQL now, when limited:
    /// after a start at a final checkpoint, that checkpoint's LSN until a non-final
    /// checkpoint is stored. `None` when nothing limits it (or checkpoints are off).
    pub fn confirm_limit(&self) -> Option<Lsn> {
        let limit = self.inner.as_ref()?.limit.load(Ordering::Acquire);
        (limit != NO_LIMIT).then_some(Lsn(limit))
    }

    /// The highest LSN the store is known to hold.
    pub fn stored(&self) -> Option<Lsn> {
        let lsn = self.inner.as_ref()?.stored.load(Ordering::Relaxed);
        (lsn != 0).then_some(Lsn(lsn))
    }
}

struct Task {
    target: Target,
    store: Arc<dyn CheckpointStore>,
    stats: Arc<CheckpointStats>,
    stored: Arc<AtomicU64>,
    limit: Arc<AtomicU64>,
    holds: Arc<AtomicU64>,
    backfill: SharedBackfill,
}

impl Task {
    async fn run(
        self,
        mut confirmed: watch::Receiver<Progress>,
        mut changes: watch::Receiver<u64>,
        mut finals: mpsc::Receiver<oneshot::Sender<Result<(), CheckpointError>>>,
    ) {
        let mut pending = false;
        // The backfill state changed since the last write.
        let mut dirty = false;
        let mut next_write = Instant::now();
        let mut backoff = self.target.interval;
        loop {
            tokio::select! {
                request = finals.recv() => {
                    // None: the slot's Checkpointer is gone, and with it the slot.
                    let Some(reply) = request else { return };
                    let lsn = confirmed.borrow_and_update().get();
                    let result = self.write(lsn, true).await;
                    pending = result.is_err();
                    let _ = reply.send(result);
                }
                changed = confirmed.changed(), if !pending => {
                    if changed.is_err() {
                        return;
                    }
                    pending = true;
                }
                changed = changes.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    changes.borrow_and_update();
                    dirty = true;
                    pending = true;
                }
                _ = tokio::time::sleep_until(next_write), if pending => {
                    let lsn = confirmed.borrow_and_update().get();
                    let limited = self.limit.load(Ordering::Acquire) != NO_LIMIT;
                    // A final checkpoint is replaced even at the same LSN.
                    if lsn.0 <= self.stored.load(Ordering::Relaxed) && !limited && !dirty {
                        pending = false;
                        continue;
                    }
                    match self.write(lsn, false).await {
                        Ok(()) => {
                            pending = false;
                            dirty = false;
                            backoff = self.target.interval;
                            next_write = Instant::now() + self.target.interval;
                        }
                        Err(e) => {
                            let age = match self.stats.age() {
                                Some(age) => format!("{}s old", age.as_secs()),
                                None => "never written by this process".to_string(),
                            };
                            let held = match self.limit.load(Ordering::Acquire) {
                                NO_LIMIT => String::new(),
                                at => format!("; the slot's confirmed position stays at the final checkpoint {} until a checkpoint is written, so PostgreSQL retains WAL meanwhile", Lsn(at)),
                            };
                            tracing::warn!(slot = %self.target.slot, retry_in = %crate::telemetry::secs(backoff), "checkpoint write failed (streaming continues; the last checkpoint is {age}{held}): {e}");
                            next_write = Instant::now() + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
            }
        }
    }

    async fn write(&self, lsn: Lsn, is_final: bool) -> Result<(), CheckpointError> {
        let t = &self.target;
        let holds = self.holds.load(Ordering::Acquire);
        let backfill = self
            .backfill
            .lock()
            .ok()
            .map(|s| s.clone())
            .filter(|s| *s != BackfillState::default());
        let checkpoint = Checkpoint {
            lsn: lsn.to_string(),
            slot: t.slot.clone(),
            stream: t.stream.clone(),
            database: t.database.clone(),
            time: now_rfc3339(),
            is_final,
            dropped: false,
            backfill,
        };
        let result = self.store.write(&t.parameter, &checkpoint).await;
        match &result {
            Ok(()) => {
                self.stored.fetch_max(lsn.0, Ordering::Relaxed);
                // Durable and not final, and no backfill request taken since its
                // state was read: the slot may move past it now.
                if !is_final && self.holds.load(Ordering::Acquire) == holds {
                    self.limit.store(NO_LIMIT, Ordering::Release);
                }
                self.stats.written(lsn);
                tracing::debug!(slot = %t.slot, lsn = %lsn, "checkpoint {lsn} written");
            }
            Err(_) => {
                self.stats.write_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::MemoryStore;
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
    async fn after_a_final_checkpoint_nothing_past_it_is_confirmed_until_a_non_final_one_is_stored()
    {
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
}
