//! Operational metrics: the metric names and units, the per-slot values the pipeline
//! updates, and the point-in-time [`Snapshot`] (read by `serve`) that both outputs render: CloudWatch
//! Embedded Metric Format lines on stdout (`emf`) and Prometheus text (`prometheus`).
//!
//! Owns what each metric means. It never decides anything about a slot (stop, retry):
//! it only records what the pipeline and the WAL monitor observed. Counters are kept
//! cumulative here; EMF turns them into per-interval deltas, Prometheus exposes them
//! as they are.

pub mod emf;
mod progress;
pub mod prometheus;
mod skipped;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use crate::decode::Event;
use crate::lsn::Lsn;
/// Commit timestamps as wal2json prints them, for record formats that need milliseconds.
pub(crate) use progress::parse_pg_timestamp_ms;
use progress::Progress;
pub use skipped::SkippedChanges;

/// Metric names, as CloudWatch shows them.
pub mod names {
    pub const CHANGES_READ: &str = "ChangesRead";
    pub const CHANGES_SKIPPED: &str = "ChangesSkipped";
    pub const RECORDS_PUT: &str = "RecordsPut";
    pub const BYTES_PUT: &str = "BytesPut";
    pub const PUT_REQUESTS: &str = "PutRequests";
    pub const RECORDS_RETRIED: &str = "RecordsRetried";
    pub const THROTTLED_RECORDS: &str = "ThrottledRecords";
    pub const REPLICATION_LAG_BYTES: &str = "ReplicationLagBytes";
    pub const REPLICATION_LAG_MS: &str = "ReplicationLagMs";
    pub const OLDEST_UNACKED_AGE_MS: &str = "OldestUnackedAgeMs";
    pub const CHECKPOINT_AGE_SECONDS: &str = "CheckpointAgeSeconds";
    pub const SLOT_RETAINED_WAL_BYTES: &str = "SlotRetainedWalBytes";
    pub const SLOT_STATUS: &str = "SlotStatus";
    pub const BACKFILL_ROWS_READ: &str = "BackfillRowsRead";
    pub const BACKFILL_TABLES_REMAINING: &str = "BackfillTablesRemaining";
}

/// Default CloudWatch namespace (a config default, so it lives in `config`).
pub use crate::config::DEFAULT_METRICS_NAMESPACE as DEFAULT_NAMESPACE;
/// Prefix of every Prometheus metric name.
pub const PROMETHEUS_PREFIX: &str = "pg_cdc_to_kinesis_";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows; EMF sends the increase since the last line.
    Counter,
    Gauge,
}

/// One metric's definition.
#[derive(Debug, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    /// CloudWatch unit.
    pub unit: &'static str,
    pub kind: Kind,
    /// Prometheus name without the prefix (counters get `_total` on top).
    pub prom: &'static str,
    pub help: &'static str,
    /// Has the `Stream` dimension besides `Slot` (the sink's metrics).
    pub per_stream: bool,
}

const fn m(
    name: &'static str,
    unit: &'static str,
    kind: Kind,
    prom: &'static str,
    help: &'static str,
    per_stream: bool,
) -> Metric {
    Metric {
        name,
        unit,
        kind,
        prom,
        help,
        per_stream,
    }
}

/// Every metric, in the order they are written.
pub const METRICS: &[Metric] = &[
    m(names::CHANGES_READ, "Count", Kind::Counter, "changes_read", "Row changes read from the replication slot", false),
    m(names::CHANGES_SKIPPED, "Count", Kind::Counter, "changes_skipped", "Updates and deletes wal2json skipped because their table has no primary key and no replica identity", false),
    m(names::RECORDS_PUT, "Count", Kind::Counter, "records_put", "Records Kinesis accepted", true),
    m(names::BYTES_PUT, "Bytes", Kind::Counter, "bytes_put", "Bytes (data plus partition keys) Kinesis accepted", true),
    m(names::PUT_REQUESTS, "Count", Kind::Counter, "put_requests", "PutRecords requests sent", true),
    m(names::RECORDS_RETRIED, "Count", Kind::Counter, "records_retried", "Records sent again after a failure", true),
    m(names::THROTTLED_RECORDS, "Count", Kind::Counter, "throttled_records", "Records Kinesis rejected for throughput", true),
    m(names::REPLICATION_LAG_BYTES, "Bytes", Kind::Gauge, "replication_lag_bytes", "Server WAL position minus the slot's confirmed position", false),
    m(names::REPLICATION_LAG_MS, "Milliseconds", Kind::Gauge, "replication_lag_ms", "Now minus the commit time of the oldest change not yet acknowledged by Kinesis; 0 when nothing is pending", false),
    m(names::OLDEST_UNACKED_AGE_MS, "Milliseconds", Kind::Gauge, "oldest_unacked_age_ms", "Time since the oldest change not yet acknowledged by Kinesis was read; 0 when nothing is pending", false),
    m(names::CHECKPOINT_AGE_SECONDS, "Seconds", Kind::Gauge, "checkpoint_age_seconds", "Age of the slot's last checkpoint", false),
    m(names::SLOT_RETAINED_WAL_BYTES, "Bytes", Kind::Gauge, "slot_retained_wal_bytes", "WAL the slot holds back on the server (current WAL position minus restart_lsn)", false),
    m(names::SLOT_STATUS, "None", Kind::Gauge, "slot_status", "1 streaming, 0 starting or retrying, -1 stopped", false),
    m(names::BACKFILL_ROWS_READ, "Count", Kind::Counter, "backfill_rows_read", "Rows read by backfills and initial snapshots", false),
    m(names::BACKFILL_TABLES_REMAINING, "Count", Kind::Gauge, "backfill_tables_remaining", "Tables whose backfill has not finished", false),
];

/// What the WAL monitor last read from `pg_replication_slots`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WalSample {
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    /// Bytes that can still be written before the slot is in danger of being lost
    /// (`NULL` when `max_slot_wal_keep_size` is unlimited).
    pub safe_wal_size: Option<i64>,
    /// Current WAL position minus `restart_lsn`.
    pub retained_bytes: Option<i64>,
    /// Current WAL position minus `confirmed_flush_lsn`.
    pub lag_bytes: Option<i64>,
    pub active: bool,
    pub active_pid: Option<i32>,
    pub confirmed_flush_lsn: Option<Lsn>,
}

/// A slot's observed values, updated by the session and the WAL monitor; read by the
/// metrics outputs and `/readyz`. (Checkpoint ages come from `SlotStatus::checkpoint`.)
#[derive(Debug, Default)]
pub struct SlotMetrics {
    changes_read: AtomicU64,
    progress: Mutex<Progress>,
    wal: Mutex<Option<WalSample>>,
    lost: AtomicBool,
    /// When the slot entered `Retrying` (kept across consecutive retries).
    retrying_since: Mutex<Option<Instant>>,
    heartbeats: AtomicU64,
    /// wal2json's skipped updates and deletes (counted from its warnings).
    pub skipped: Arc<SkippedChanges>,
    backfill_rows: AtomicU64,
    backfill_tables: AtomicU64,
    /// One line per backfilled table (`status`), newest state.
    backfill_lines: Mutex<Vec<String>>,
}

impl SlotMetrics {
    /// The session read these events from the slot (before handing them on) at
    /// `read_at`: the time of the read, or of the burst of buffered messages it
    /// belongs to (a clock read per message cost about 1% of a row's CPU).
    pub fn observe(&self, events: &[Event], read_at: Instant) {
        if events.is_empty() {
            return;
        }
        let mut changes = 0;
        if let Ok(mut p) = self.progress.lock() {
            changes = p.observe(events, read_at);
        }
        self.changes_read.fetch_add(changes, Ordering::Relaxed);
    }

    /// Kinesis has accepted everything up to `lsn`.
    pub fn acked(&self, lsn: Lsn) {
        if let Ok(mut p) = self.progress.lock() {
            p.acked(lsn);
        }
    }

    /// Record a state change (called by `SlotStatus`): whether the slot is now
    /// retrying, for the readiness budget.
    pub fn note_retrying(&self, retrying: bool) {
        if let Ok(mut since) = self.retrying_since.lock() {
            if retrying {
                since.get_or_insert_with(Instant::now);
            } else {
                *since = None;
            }
        }
    }

    /// The replication lag (now minus the commit time of the oldest change not yet
    /// acknowledged) and the age of that change, both in ms; `None` when not known.
    pub fn lag_and_oldest_unacked_ms(&self, now_ms: i64) -> (Option<i64>, Option<i64>) {
        self.progress
            .lock()
            .map(|p| (p.lag_ms(now_ms), p.oldest_unacked_ms(Instant::now())))
            .unwrap_or((None, None))
    }

    /// How long the slot has been retrying without streaming in between.
    pub fn retrying_for(&self) -> Option<std::time::Duration> {
        self.retrying_since
            .lock()
            .ok()
            .and_then(|s| s.map(|t| t.elapsed()))
    }

    pub fn set_wal(&self, sample: WalSample) {
        if sample.wal_status.as_deref() == Some("lost") {
            self.lost.store(true, Ordering::Relaxed);
        }
        if let Ok(mut w) = self.wal.lock() {
            *w = Some(sample);
        }
    }

    pub fn wal(&self) -> Option<WalSample> {
        self.wal.lock().ok().and_then(|w| w.clone())
    }

    /// The server invalidated the slot: the session must stop it.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Relaxed)
    }

    pub fn heartbeat_sent(&self) {
        self.heartbeats.fetch_add(1, Ordering::Relaxed);
    }

    /// Heartbeat messages written so far.
    pub fn heartbeats(&self) -> u64 {
        self.heartbeats.load(Ordering::Relaxed)
    }

    pub fn changes_read(&self) -> u64 {
        self.changes_read.load(Ordering::Relaxed)
    }

    pub fn backfill_read(&self, rows: u64) {
        self.backfill_rows.fetch_add(rows, Ordering::Relaxed);
    }

    /// The backfill's tables: how many remain, and a line on each for `status`.
    pub fn backfill_progress(&self, remaining: usize, lines: Vec<String>) {
        self.backfill_tables
            .store(remaining as u64, Ordering::Relaxed);
        if let Ok(mut l) = self.backfill_lines.lock() {
            *l = lines;
        }
    }

    pub fn backfill_rows_read(&self) -> u64 {
        self.backfill_rows.load(Ordering::Relaxed)
    }

    pub fn backfill_tables_remaining(&self) -> u64 {
        self.backfill_tables.load(Ordering::Relaxed)
    }

    pub fn backfill_lines(&self) -> Vec<String> {
        self.backfill_lines
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

/// One slot's values at one moment; counters cumulative. A metric whose value is
/// not known yet (no WAL sample, no checkpoint) is absent rather than zero, so an
/// alarm sees missing data instead of a reassuring value.
#[derive(Debug, Clone)]
pub struct SlotSnapshot {
    pub slot: String,
    pub stream: String,
    pub values: Vec<(&'static Metric, f64)>,
}

impl SlotSnapshot {
    pub fn get(&self, name: &str) -> Option<f64> {
        self.values
            .iter()
            .find(|(m, _)| m.name == name)
            .map(|(_, v)| *v)
    }
}

/// All slots at one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub at: SystemTime,
    pub slots: Vec<SlotSnapshot>,
}

pub fn metric(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_a_unique_name_and_a_cloudwatch_unit() {
        let units = ["Count", "Bytes", "Milliseconds", "Seconds", "None"];
        for (i, a) in METRICS.iter().enumerate() {
            assert!(units.contains(&a.unit), "{} has unit {}", a.name, a.unit);
            for b in &METRICS[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.prom, b.prom);
            }
        }
        assert_eq!(METRICS.len(), 15);
    }

    #[test]
    fn retrying_since_survives_consecutive_retries_and_resets_on_streaming() {
        let m = SlotMetrics::default();
        m.note_retrying(true);
        let first = m.retrying_for().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        m.note_retrying(true);
        assert!(m.retrying_for().unwrap() > first + std::time::Duration::from_millis(10));
        m.note_retrying(false);
        assert_eq!(m.retrying_for(), None);
    }

    #[test]
    fn a_lost_sample_marks_the_slot_lost() {
        let m = SlotMetrics::default();
        m.set_wal(WalSample {
            wal_status: Some("unreserved".into()),
            ..WalSample::default()
        });
        assert!(!m.is_lost());
        m.set_wal(WalSample {
            wal_status: Some("lost".into()),
            ..WalSample::default()
        });
        assert!(m.is_lost());
    }
}
