//! The backfill progress a checkpoint carries: the slot's backfill jobs, and for each
//! table the key of the last row whose chunk Kinesis accepted.
//!
//! Owns the stored shape and its bookkeeping rules (one job per signal id, tables in
//! order, progress that only moves forward). The chunk loop is `crate::backfill`'s.

use serde::{Deserialize, Serialize};

/// Signal ids remembered after their job ended, so a replayed signal runs once.
const SEEN_IDS: usize = 64;

/// A slot's backfills, as stored in its checkpoint document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillState {
    /// The initial snapshot (`snapshot: initial`) has finished.
    #[serde(default)]
    pub snapshot_done: bool,
    /// Jobs in the order they were asked for; the first runs.
    #[serde(default)]
    pub jobs: Vec<BackfillJob>,
    /// Ids of jobs taken (running or ended), newest last.
    #[serde(default)]
    pub seen: Vec<String>,
    /// The job that ended last, for `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<BackfillJob>,
}

/// One request: tables to read, with an optional SQL filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackfillJob {
    pub id: String,
    /// The initial snapshot, rather than a requested backfill.
    #[serde(default)]
    pub initial: bool,
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    pub tables: Vec<TableProgress>,
}

/// One table of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableProgress {
    /// `schema.table`.
    pub table: String,
    /// The key (each column's text) of the last row of the last accepted chunk;
    /// `None` before the first.
    #[serde(default)]
    pub last_key: Option<Vec<String>>,
    /// Chunks accepted so far.
    #[serde(default)]
    pub chunks: u64,
    /// Rows put on the stream so far.
    #[serde(default)]
    pub rows: u64,
    /// The row estimate (`pg_class.reltuples`) when the table started.
    #[serde(default)]
    pub estimate: u64,
    #[serde(default)]
    pub state: TableState,
    /// Why a failed table was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TableState {
    #[default]
    Pending,
    Done,
    /// Refused (no usable key, a bad filter): the reason was logged; other tables go on.
    Failed,
}

impl TableProgress {
    pub fn new(table: impl Into<String>) -> Self {
        TableProgress {
            table: table.into(),
            last_key: None,
            chunks: 0,
            rows: 0,
            estimate: 0,
            state: TableState::Pending,
            error: None,
        }
    }
}

impl BackfillState {
    /// Take a job unless its id was taken before; true when it was added.
    pub fn add(&mut self, job: BackfillJob) -> bool {
        if self.seen.contains(&job.id) || self.jobs.iter().any(|j| j.id == job.id) {
            return false;
        }
        self.seen.push(job.id.clone());
        if self.seen.len() > SEEN_IDS {
            self.seen.remove(0);
        }
        self.jobs.push(job);
        true
    }

    /// The running job's next table: (job index, table index).
    pub fn next_table(&self) -> Option<(usize, usize)> {
        let job = self.jobs.first()?;
        job.tables
            .iter()
            .position(|t| t.state == TableState::Pending)
            .map(|t| (0, t))
    }

    /// Drop the first job when none of its tables is pending; true when it was the
    /// initial snapshot.
    pub fn finish_job_if_done(&mut self) -> Option<BackfillJob> {
        let done = self
            .jobs
            .first()
            .is_some_and(|j| j.tables.iter().all(|t| t.state != TableState::Pending));
        if !done {
            return None;
        }
        let job = self.jobs.remove(0);
        if job.initial {
            self.snapshot_done = true;
        }
        self.last = Some(job.clone());
        Some(job)
    }

    /// Tables not yet finished, over every job.
    pub fn tables_remaining(&self) -> usize {
        self.jobs
            .iter()
            .flat_map(|j| &j.tables)
            .filter(|t| t.state == TableState::Pending)
            .count()
    }

    /// Whether an initial-snapshot job exists or has finished.
    pub fn has_initial(&self) -> bool {
        self.snapshot_done || self.jobs.iter().any(|j| j.initial)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str, tables: &[&str]) -> BackfillJob {
        BackfillJob {
            id: id.into(),
            initial: false,
            filter: None,
            tables: tables.iter().map(|t| TableProgress::new(*t)).collect(),
        }
    }

    #[test]
    fn a_signal_id_is_taken_once_even_after_its_job_ended() {
        let mut s = BackfillState::default();
        assert!(s.add(job("a", &["public.t"])));
        assert!(!s.add(job("a", &["public.t"])), "replayed while running");
        s.jobs[0].tables[0].state = TableState::Done;
        assert!(s.finish_job_if_done().is_some());
        assert!(!s.add(job("a", &["public.t"])), "replayed after it ended");
        assert!(s.add(job("b", &["public.t"])));
    }

    #[test]
    fn tables_run_in_order_and_failed_ones_do_not_block() {
        let mut s = BackfillState::default();
        s.add(job("a", &["public.x", "public.y"]));
        assert_eq!(s.next_table(), Some((0, 0)));
        s.jobs[0].tables[0].state = TableState::Failed;
        assert_eq!(s.next_table(), Some((0, 1)));
        assert_eq!(s.tables_remaining(), 1);
        assert!(s.finish_job_if_done().is_none());
        s.jobs[0].tables[1].state = TableState::Done;
        assert!(s.finish_job_if_done().is_some());
        assert_eq!(s.next_table(), None);
    }

    #[test]
    fn the_stored_form_reads_back_and_old_checkpoints_have_none() {
        let mut s = BackfillState::default();
        let mut j = job("a", &["public.t"]);
        j.initial = true;
        j.tables[0].last_key = Some(vec!["42".into()]);
        s.add(j);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<BackfillState>(&json).unwrap(), s);
        assert!(s.has_initial());
        assert_eq!(
            serde_json::from_str::<BackfillState>("{}").unwrap(),
            BackfillState::default()
        );
    }
}
