//! The checkpoint writer's background task: one write per interval while the confirmed
//! LSN or the backfill state moved, the backoff while the store fails, and the final
//! write on request.
//!
//! Owns when a write happens and what it stores; it lifts the confirmation limit only
//! after a durable non-final write that no backfill hold came after. It never blocks
//! the replication loop, which only sends on the channels.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::super::backfill::BackfillState;
use super::super::{
    now_rfc3339, Checkpoint, CheckpointError, CheckpointStats, CheckpointStore, Progress,
};
use super::{SharedBackfill, Target, NO_LIMIT};
use crate::lsn::Lsn;

/// Failed writes are retried after the interval, doubling up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub(super) struct Task {
    pub(super) target: Target,
    pub(super) store: Arc<dyn CheckpointStore>,
    pub(super) stats: Arc<CheckpointStats>,
    pub(super) stored: Arc<AtomicU64>,
    pub(super) limit: Arc<AtomicU64>,
    pub(super) holds: Arc<AtomicU64>,
    pub(super) backfill: SharedBackfill,
}

impl Task {
    pub(super) async fn run(
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
