//! The per-slot checkpoint writer: a background task fed through a watch channel.
//!
//! Owns the rate limit (one write per `checkpoint_interval_secs`), the backoff while
//! the store fails, and the final write on shutdown. The replication loop only calls
//! [`Checkpointer::confirmed`], which never waits; nothing here can stop streaming.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

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

/// A slot's checkpoints. Cheap to call from the replication loop; a no-op when
/// checkpoints are disabled.
#[derive(Debug)]
pub struct Checkpointer {
    inner: Option<Inner>,
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
            return Checkpointer { inner: None };
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
            return Checkpointer { inner: None };
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
        let task = Task {
            target: target.clone(),
            store: store.clone(),
            stats: stats.clone(),
            stored: stored.clone(),
        };
        tokio::spawn(task.run(rx, finals_rx));
        Checkpointer {
            inner: Some(Inner {
                target,
                store,
                stats,
                confirmed,
                stored,
                finals,
            }),
        }
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
        if outcome.is_ok() {
            if let startup::Decision::Gap { .. } = decision {
                inner.stats.gaps_accepted.fetch_add(1, Ordering::Relaxed);
            } else if let Some(at) = checkpoint.as_ref().and_then(Checkpoint::lsn) {
                // Never write below what the store already holds.
                inner.stored.fetch_max(at.0, Ordering::Relaxed);
                self.confirmed(at);
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
                message: format!("the final write did not finish within {FINAL_WRITE_TIMEOUT:?}"),
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
}

impl Task {
    async fn run(
        self,
        mut confirmed: watch::Receiver<Progress>,
        mut finals: mpsc::Receiver<oneshot::Sender<Result<(), CheckpointError>>>,
    ) {
        let mut pending = false;
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
                _ = tokio::time::sleep_until(next_write), if pending => {
                    let lsn = confirmed.borrow_and_update().get();
                    if lsn.0 <= self.stored.load(Ordering::Relaxed) {
                        pending = false;
                        continue;
                    }
                    match self.write(lsn, false).await {
                        Ok(()) => {
                            pending = false;
                            backoff = self.target.interval;
                            next_write = Instant::now() + self.target.interval;
                        }
                        Err(e) => {
                            let age = match self.stats.age() {
                                Some(age) => format!("{}s old", age.as_secs()),
                                None => "never written by this process".to_string(),
                            };
                            tracing::warn!(slot = %self.target.slot, retry_in_s = backoff.as_secs(), "checkpoint write failed (streaming continues; the last checkpoint is {age}): {e}");
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
        let checkpoint = Checkpoint {
            lsn: lsn.to_string(),
            slot: t.slot.clone(),
            stream: t.stream.clone(),
            database: t.database.clone(),
            time: now_rfc3339(),
            is_final,
        };
        let result = self.store.write(&t.parameter, &checkpoint).await;
        match &result {
            Ok(()) => {
                self.stored.fetch_max(lsn.0, Ordering::Relaxed);
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
