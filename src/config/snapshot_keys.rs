//! The snapshot keys of a slot: `snapshot`, `snapshot_chunk_rows`,
//! `snapshot_max_rows_per_sec`.
//!
//! Owns their defaults and value rules. It never talks to PostgreSQL.

use super::file::SlotFile;
use super::value::{choice, number};
use super::{ConfigError, Source};

/// `snapshot_chunk_rows` default: rows read per chunk (one `SELECT … LIMIT n`).
pub const DEFAULT_SNAPSHOT_CHUNK_ROWS: u64 = 10_000;
/// `snapshot_chunk_rows` upper bound: a chunk is held in memory until its high
/// watermark, so it must stay a bounded piece of the slot's budget.
pub const MAX_SNAPSHOT_CHUNK_ROWS: u64 = 100_000;

/// When a slot's tables are backfilled without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Snapshot {
    /// Never: only the `backfill` command and `accept_checkpoint_gap: backfill` backfill.
    #[default]
    None,
    /// Once, when the slot is new or its checkpoint records no finished snapshot.
    Initial,
}

/// A slot's snapshot settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotConfig {
    pub mode: Snapshot,
    pub chunk_rows: u64,
    /// Rows per second the backfill reads at most; `None` = as fast as Kinesis takes them.
    pub max_rows_per_sec: Option<u64>,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        SnapshotConfig {
            mode: Snapshot::None,
            chunk_rows: DEFAULT_SNAPSHOT_CHUNK_ROWS,
            max_rows_per_sec: None,
        }
    }
}

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
) -> Result<SnapshotConfig, ConfigError> {
    let mode = choice(
        src,
        &raw.snapshot,
        &place("snapshot"),
        (("none", Snapshot::None), ("initial", Snapshot::Initial)),
        "`initial` puts every streamed table's existing rows on the stream once, while changes keep streaming",
    )?;
    let chunk_rows = match &raw.snapshot_chunk_rows {
        None => DEFAULT_SNAPSHOT_CHUNK_ROWS,
        Some(v) => number(
            src,
            v,
            &place("snapshot_chunk_rows"),
            1,
            MAX_SNAPSHOT_CHUNK_ROWS,
        )?,
    };
    let max_rows_per_sec = match &raw.snapshot_max_rows_per_sec {
        None => None,
        Some(v) => Some(number(
            src,
            v,
            &place("snapshot_max_rows_per_sec"),
            1,
            u64::from(u32::MAX),
        )?),
    };
    Ok(SnapshotConfig {
        mode,
        chunk_rows,
        max_rows_per_sec,
    })
}
