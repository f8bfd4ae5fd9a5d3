//! Durable checkpoints: each slot's confirmed LSN, kept outside PostgreSQL (SSM
//! Parameter Store) so that a lost or re-created slot is noticed at startup.
//!
//! Owns the checkpoint document, the [`CheckpointStore`] trait with its SSM
//! ([`SsmStore`]) and in-memory ([`MemoryStore`]) implementations, the background
//! writer ([`Checkpointer`]: rate limit, backoff, final write) and the startup
//! decision ([`startup`]). It never writes an LSN that was not already confirmed to
//! PostgreSQL, never moves a checkpoint backwards ([`Progress`]), and never blocks
//! or stops streaming because the store is unavailable.

pub mod backfill;
mod memory;
mod ssm;
pub mod startup;
mod writer;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::lsn::Lsn;

pub use memory::MemoryStore;
pub use ssm::{ssm_client, SsmStore};
pub use writer::{Checkpointer, SharedBackfill};

/// The stored document (JSON). `final` marks the write made after the last standby
/// status update of a clean shutdown: then the slot must be exactly here on the next
/// start, and a slot found further ahead was advanced by someone else. `dropped`
/// (with `final`) is written by the admin Lambda's `drop` at the dropped slot's
/// position: a slot created later starts ahead of it, and that gap is reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The confirmed LSN, `X/Y` as PostgreSQL writes it.
    pub lsn: String,
    pub slot: String,
    pub stream: String,
    pub database: String,
    /// When it was written, RFC 3339 UTC.
    pub time: String,
    #[serde(rename = "final", default)]
    pub is_final: bool,
    #[serde(default)]
    pub dropped: bool,
    /// Backfill jobs and their progress (see [`backfill`]); absent when none ever ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<backfill::BackfillState>,
}

impl Checkpoint {
    /// The LSN, or `None` when the document holds something that is not an LSN.
    pub fn lsn(&self) -> Option<Lsn> {
        self.lsn.parse().ok()
    }

    /// The slot must be exactly at this checkpoint on the next start: a clean
    /// shutdown's final write, or the mark the admin `drop` leaves.
    pub fn binds_the_slot(&self) -> bool {
        self.is_final || self.dropped
    }
}

/// Reading or writing a checkpoint failed. Never stops a slot by itself.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// `message` ends with what to check.
    #[error("SSM parameter {name}: {message} (or set checkpoint: false)")]
    Store { name: String, message: String },
    #[error("SSM parameter {name} does not hold a checkpoint ({problem}); delete the parameter or point checkpoint_parameter elsewhere")]
    Malformed { name: String, problem: String },
}

pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CheckpointError>> + Send + 'a>>;

/// Where checkpoints live. `read` is `Ok(None)` when no checkpoint was ever written.
pub trait CheckpointStore: Send + Sync + std::fmt::Debug {
    fn read<'a>(&'a self, name: &'a str) -> StoreFuture<'a, Option<Checkpoint>>;
    fn write<'a>(&'a self, name: &'a str, checkpoint: &'a Checkpoint) -> StoreFuture<'a, ()>;
}

/// The highest LSN confirmed so far. The one place that keeps checkpoints monotonic:
/// a lower value is ignored, never stored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress(Lsn);

impl Progress {
    pub fn new(start: Lsn) -> Self {
        Progress(start)
    }

    /// Records `lsn`; true when it moved forward.
    pub fn advance(&mut self, lsn: Lsn) -> bool {
        let before = self.0;
        self.0 = self.0.max(lsn);
        debug_assert!(self.0 >= before, "checkpoint progress moved backwards");
        self.0 > before
    }

    pub fn get(&self) -> Lsn {
        self.0
    }
}

/// Checkpoint counters for a slot, readable from other tasks (metrics, health).
#[derive(Debug, Default)]
pub struct CheckpointStats {
    /// LSN of the last successful write (0 before the first).
    last_lsn: AtomicU64,
    last_written_at: Mutex<Option<SystemTime>>,
    /// Writes that failed (each is retried later).
    pub write_failures: AtomicU64,
    /// Starts that went ahead despite a checkpoint gap (`accept_checkpoint_gap: true`).
    pub gaps_accepted: AtomicU64,
}

impl CheckpointStats {
    pub fn last_lsn(&self) -> Option<Lsn> {
        let lsn = self.last_lsn.load(Ordering::Relaxed);
        (lsn != 0).then_some(Lsn(lsn))
    }

    /// When the last checkpoint was written by this process.
    pub fn last_checkpoint_at(&self) -> Option<SystemTime> {
        self.last_written_at.lock().ok().and_then(|t| *t)
    }

    /// Age of the last checkpoint written by this process (for `CheckpointAgeSeconds`).
    pub fn age(&self) -> Option<Duration> {
        self.last_checkpoint_at()
            .map(|t| t.elapsed().unwrap_or_default())
    }

    fn written(&self, lsn: Lsn) {
        self.last_lsn.fetch_max(lsn.0, Ordering::Relaxed);
        if let Ok(mut t) = self.last_written_at.lock() {
            *t = Some(SystemTime::now());
        }
    }
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_never_moves_backwards() {
        let mut p = Progress::new(Lsn(100));
        assert!(p.advance(Lsn(200)));
        assert!(!p.advance(Lsn(150)), "a lower LSN is not progress");
        assert_eq!(p.get(), Lsn(200));
        assert!(!p.advance(Lsn(200)));
        assert!(p.advance(Lsn(201)));
        assert_eq!(p.get(), Lsn(201));
    }

    #[test]
    fn checkpoint_json_has_the_documented_fields() {
        let cp = Checkpoint {
            lsn: Lsn(0x16_B374_D848).to_string(),
            slot: "s".into(),
            stream: "st".into(),
            database: "db".into(),
            time: "2024-01-01T00:00:00Z".into(),
            is_final: true,
            dropped: false,
            backfill: None,
        };
        let v: serde_json::Value = serde_json::to_value(&cp).unwrap();
        assert_eq!(v["lsn"], "16/B374D848");
        assert_eq!(v["final"], true);
        assert_eq!(v["dropped"], false);
        assert_eq!(v["database"], "db");
        let back: Checkpoint = serde_json::from_value(v).unwrap();
        assert_eq!(back.lsn(), Some(Lsn(0x16_B374_D848)));
        // Written before `dropped` existed: not dropped.
        let old: Checkpoint = serde_json::from_str(
            r#"{"lsn":"0/1","slot":"s","stream":"st","database":"db","time":"t","final":false}"#,
        )
        .unwrap();
        assert!(!old.dropped && !old.binds_the_slot());
    }

    #[test]
    fn stats_report_age_only_after_a_write() {
        let stats = CheckpointStats::default();
        assert_eq!(stats.age(), None);
        stats.written(Lsn(5));
        stats.written(Lsn(3));
        assert_eq!(stats.last_lsn(), Some(Lsn(5)));
        assert!(stats.age().unwrap() < Duration::from_secs(5));
    }
}
