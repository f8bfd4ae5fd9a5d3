//! Reading the running slots' metrics: each watched slot's [`SlotStatus`] (sink
//! counters, checkpoint age, state, observed values) read into one
//! [`metrics::Snapshot`] for the EMF lines and `/metrics`.
//!
//! Owns the mapping from a slot's status to metric values. It sits above the
//! pipeline (it reads `SlotStatus`), so `metrics` itself never imports it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::metrics::{metric, names, SlotSnapshot, Snapshot};
use crate::pipeline::{SlotState, SlotStatus};

fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A slot and its stream, the unit the outputs report on.
#[derive(Clone)]
pub struct Watched {
    pub status: Arc<SlotStatus>,
    pub stream: String,
}

/// Read every slot's values now.
pub fn snapshot(slots: &[Watched]) -> Snapshot {
    let at = SystemTime::now();
    let now_ms = unix_ms(at);
    let slots = slots.iter().map(|w| slot_snapshot(w, now_ms, at)).collect();
    Snapshot { at, slots }
}

fn slot_snapshot(w: &Watched, now_ms: i64, at: SystemTime) -> SlotSnapshot {
    let s = &w.status;
    let m = &s.metrics;
    let stats = &s.stats;
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
    let mut values: Vec<(&'static str, Option<f64>)> = vec![
        (names::CHANGES_READ, Some(m.changes_read() as f64)),
        (names::CHANGES_SKIPPED, Some(m.skipped.total() as f64)),
        (names::RECORDS_PUT, Some(load(&stats.records_put))),
        (names::BYTES_PUT, Some(load(&stats.bytes_put))),
        (names::PUT_REQUESTS, Some(load(&stats.put_requests))),
        (names::RECORDS_RETRIED, Some(load(&stats.records_retried))),
        (
            names::THROTTLED_RECORDS,
            Some(load(&stats.throttled_records)),
        ),
    ];
    let wal = m.wal();
    let (lag_ms, oldest_ms) = m.lag_and_oldest_unacked_ms(now_ms);
    values.push((
        names::REPLICATION_LAG_BYTES,
        wal.as_ref()
            .and_then(|w| w.lag_bytes)
            .map(|b| b.max(0) as f64),
    ));
    values.push((names::REPLICATION_LAG_MS, lag_ms.map(|v| v as f64)));
    values.push((names::OLDEST_UNACKED_AGE_MS, oldest_ms.map(|v| v as f64)));
    values.push((
        names::CHECKPOINT_AGE_SECONDS,
        s.checkpoint
            .last_checkpoint_at()
            .map(|t| at.duration_since(t).map(|d| d.as_secs()).unwrap_or(0) as f64),
    ));
    values.push((
        names::SLOT_RETAINED_WAL_BYTES,
        wal.as_ref()
            .and_then(|w| w.retained_bytes)
            .map(|b| b.max(0) as f64),
    ));
    values.push((names::SLOT_STATUS, Some(status_value(&s.state()))));
    values.push((
        names::BACKFILL_ROWS_READ,
        Some(m.backfill_rows_read() as f64),
    ));
    values.push((
        names::BACKFILL_TABLES_REMAINING,
        Some(m.backfill_tables_remaining() as f64),
    ));
    SlotSnapshot {
        slot: s.slot.clone(),
        stream: w.stream.clone(),
        values: values
            .into_iter()
            .filter_map(|(name, v)| Some((metric(name)?, v?)))
            .collect(),
    }
}

/// The `SlotStatus` metric: 1 streaming, 0 starting or retrying, -1 stopped.
fn status_value(state: &SlotState) -> f64 {
    match state {
        SlotState::Streaming => 1.0,
        SlotState::Starting | SlotState::Retrying { .. } => 0.0,
        SlotState::Stopped { .. } | SlotState::Finished => -1.0,
    }
}
