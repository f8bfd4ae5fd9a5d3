//! The per-slot checkpoint writer: a background task (`task`) fed through a watch
//! channel, and the [`Checkpointer`] handle the slot holds.
//!
//! Owns the handle's side: starting the task, the final write on shutdown, and the
//! confirmation limit after a start at a final checkpoint (the rate limit, one write
//! per `checkpoint_interval_secs`, and the backoff while the store fails are the
//! task's). The replication loop only calls
//! [`Checkpointer::confirmed`] and [`Checkpointer::confirm_limit`], which never wait;
//! nothing here can stop streaming.

mod task;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::backfill::BackfillState;
use super::startup::{self, CheckpointGap, SlotSeen};
use super::{ssm_client, CheckpointError, CheckpointStats, CheckpointStore, Progress, SsmStore};
use crate::config::SlotConfig;
use crate::lsn::Lsn;
use task::Task;

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

#[cfg(test)]
mod tests;
