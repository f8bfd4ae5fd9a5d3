//! Backfills: a slot's existing rows onto its stream while changes keep streaming,
//! in chunks between watermarks (the DBLog method), resumable from the checkpoint.
//!
//! Owns the chunk loop that runs beside one replication session: for the running
//! job's next table it writes a low watermark into the WAL, reads the next chunk in
//! key order on its own SQL connection, hands the rows to the reader
//! ([`window::Windows`]), writes the high watermark, waits until Kinesis accepted
//! everything up to the high watermark's commit, and only then records the chunk's
//! last key in the checkpoint's [`BackfillState`]. It never sends to Kinesis and
//! never confirms a position: the session's reader and sink do, as for any change.

pub mod table;
/// The chunk's snapshot sees what committed before its low watermark; which sessions
/// this role can see sit idle.
mod visible;
pub(crate) use visible::unseen_session_states;
pub mod window;

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio_postgres::Client;

use crate::checkpoint::backfill::{BackfillJob, BackfillState, TableProgress, TableState};
use crate::checkpoint::{Checkpointer, SharedBackfill};
use crate::config::SlotConfig;
use crate::credentials::Credentials;
use crate::lsn::Lsn;
use crate::metrics::SlotMetrics;
use crate::signal::{self, Mark, Signal};
use crate::source;
use crate::telemetry::CONSOLE_TARGET;
use table::{key_text, TableError, TableShape, ValueStyle};
use window::{BufferedChunk, ChunkRows};

/// Wait this long after a failed connection, watermark or transient query.
const RETRY_AFTER: Duration = Duration::from_secs(5);
/// Progress lines at most this often per table (and at its end).
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// What the reader tells the backfill task.
#[derive(Debug)]
pub enum Note {
    /// A backfill was requested (the state already holds the job).
    Requested,
    /// A chunk's high watermark went by in the transaction ending at `end_lsn`, with
    /// `rows` read records put in it.
    Closed {
        table: String,
        chunk: u64,
        rows: u64,
        end_lsn: Lsn,
    },
}

/// The ends of the channels between the reader and the backfill task.
pub struct Links {
    pub rows_tx: mpsc::Sender<ChunkRows>,
    pub notes_rx: mpsc::UnboundedReceiver<Note>,
}

/// A job over `tables`, queued in `state` unless its id was taken before.
pub fn request(
    state: &SharedBackfill,
    id: String,
    tables: Vec<String>,
    filter: Option<String>,
    initial: bool,
) -> bool {
    let job = BackfillJob {
        id,
        initial,
        filter,
        tables: tables.into_iter().map(TableProgress::new).collect(),
    };
    state.lock().map(|mut s| s.add(job)).unwrap_or(false)
}

/// Every table the slot streams, by its wal2json options (`add-tables`, `filter-tables`).
pub async fn streamed_tables(
    sql: &Client,
    options: &[(String, String)],
) -> Result<Vec<String>, crate::source::SourceError> {
    let filter = crate::decode::tables::TableFilter::from_options(options);
    let mut tables: Vec<String> = source::table_identities(sql)
        .await?
        .into_iter()
        .filter(|t| filter.decodes(&t.schema, &t.table))
        .map(|t| format!("{}.{}", t.schema, t.table))
        .collect();
    tables.sort();
    Ok(tables)
}

/// The backfill task of one session.
pub struct Backfiller<'a> {
    pub slot: &'a SlotConfig,
    /// Fresh parameters for each connect (a rotated secret, a new IAM token).
    pub credentials: &'a Credentials,
    /// This session's id, written into its watermarks.
    pub run: String,
    pub state: SharedBackfill,
    pub checkpoints: &'a Checkpointer,
    pub metrics: &'a SlotMetrics,
    pub acked: watch::Receiver<Lsn>,
    /// How wal2json prints values under the slot's options.
    pub style: ValueStyle,
}

impl Backfiller<'_> {
    /// Runs until the session ends (the caller drops it). Errors are logged and
    /// retried; a table that cannot be backfilled is marked failed, and the others go on.
    pub async fn run(mut self, mut links: Links) {
        let mut sql: Option<Client> = None;
        let mut last_line = Instant::now() - PROGRESS_EVERY;
        loop {
            self.publish();
            let next = self.state.lock().ok().and_then(|s| s.next_table());
            let Some((job, table)) = next else {
                self.finish_jobs();
                // Nothing to do until a request comes.
                match links.notes_rx.recv().await {
                    Some(_) => continue,
                    None => return,
                }
            };
            let client = match &mut sql {
                Some(c) if !c.is_closed() => c,
                _ => match self.connect().await {
                    Ok(c) => sql.insert(c),
                    Err(e) => {
                        tracing::warn!(slot = %self.slot.name, "backfill: cannot connect, retrying in {}s: {e}", RETRY_AFTER.as_secs());
                        tokio::time::sleep(RETRY_AFTER).await;
                        continue;
                    }
                },
            };
            match self
                .chunk(client, &mut links, job, table, &mut last_line)
                .await
            {
                Ok(()) => {}
                Err(ChunkError::Table(e)) => {
                    tracing::error!(slot = %self.slot.name, "backfill: {e}; the other tables go on");
                    self.update(job, table, |t| {
                        t.state = TableState::Failed;
                        t.error = Some(e.to_string());
                    });
                }
                Err(ChunkError::Retry(why)) => {
                    tracing::warn!(slot = %self.slot.name, "backfill: {why}; retrying the chunk in {}s", RETRY_AFTER.as_secs());
                    sql = None;
                    tokio::time::sleep(RETRY_AFTER).await;
                }
                Err(ChunkError::SessionEnded) => return,
            }
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let params = self
            .credentials
            .connect_params()
            .await
            .map_err(|e| e.to_string())?;
        source::sql_connect(&params)
            .await
            .map_err(|e| e.to_string())
    }

    /// One chunk of `table` of `job`: watermarks, read, wait for acceptance, record.
    async fn chunk(
        &mut self,
        client: &mut Client,
        links: &mut Links,
        job: usize,
        table: usize,
        last_line: &mut Instant,
    ) -> Result<(), ChunkError> {
        let Some((progress, filter)) = self.state.lock().ok().and_then(|s| {
            let j = s.jobs.get(job)?;
            Some((j.tables.get(table)?.clone(), j.filter.clone()))
        }) else {
            return Ok(());
        };
        let started = Instant::now();
        let shape = TableShape::load(client, &progress.table)
            .await
            .map_err(ChunkError::from_table)?;
        if progress.chunks == 0 && progress.estimate == 0 {
            let estimate = shape.estimate;
            self.update(job, table, |t| t.estimate = estimate);
            tracing::info!(target: CONSOLE_TARGET, slot = %self.slot.name, "[{}] Backfilling {}: starting, ~{} rows, {} per chunk.", self.slot.name, progress.table, shape.estimate, self.slot.snapshot.chunk_rows);
        }
        let chunk = progress.chunks + 1;
        let mark = |mark| Signal::Watermark {
            slot: self.slot.name.clone(),
            run: self.run.clone(),
            table: progress.table.clone(),
            chunk,
            mark,
        };
        signal::emit(client, &mark(Mark::Low))
            .await
            .map_err(|e| ChunkError::Retry(format!("writing a low watermark: {e}")))?;
        // Whatever fails from here, the reader gets this chunk's rows or `None`: it
        // waits at the low watermark for them.
        let (rows, failure) = match visible::after_low_watermark(client, &progress.table).await {
            Err(e) => (
                None,
                Some(ChunkError::Retry(format!(
                    "waiting for the transactions in progress at the low watermark: {e}"
                ))),
            ),
            Ok(()) => match shape
                .read_chunk(
                    client,
                    progress.last_key.as_deref(),
                    filter.as_deref(),
                    self.slot.snapshot.chunk_rows,
                    self.style,
                )
                .await
            {
                Ok(rows) => (Some(rows), None),
                Err(e) => (None, Some(ChunkError::from_table(e))),
            },
        };
        let count = rows.as_ref().map_or(0, Vec::len) as u64;
        let last_key = rows.as_ref().and_then(|r| r.last()).and_then(|row| {
            shape
                .key
                .iter()
                .map(|k| {
                    row.iter()
                        .find(|c| c.name == *k)
                        .map(|c| key_text(&c.value))
                })
                .collect::<Option<Vec<String>>>()
        });
        let handed = ChunkRows {
            table: progress.table.clone(),
            chunk,
            rows: rows.map(|rows| BufferedChunk {
                schema: shape.schema.clone(),
                name: shape.name.clone(),
                key: shape.key.clone(),
                pk: shape.pk.clone(),
                rows,
            }),
        };
        if links.rows_tx.send(handed).await.is_err() {
            return Err(ChunkError::SessionEnded);
        }
        if let Some(failure) = failure {
            return Err(failure);
        }
        signal::emit(client, &mark(Mark::High))
            .await
            .map_err(|e| ChunkError::Retry(format!("writing a high watermark: {e}")))?;
        // The reader reaches the high watermark; then Kinesis must accept it all.
        let (emitted, end_lsn) = loop {
            match links.notes_rx.recv().await {
                None => return Err(ChunkError::SessionEnded),
                Some(Note::Closed {
                    table: t,
                    chunk: c,
                    rows,
                    end_lsn,
                }) if t == progress.table && c == chunk => break (rows, end_lsn),
                Some(_) => {}
            }
        };
        while *self.acked.borrow_and_update() < end_lsn {
            if self.acked.changed().await.is_err() {
                return Err(ChunkError::SessionEnded);
            }
        }
        self.metrics.backfill_read(count);
        let done = count < self.slot.snapshot.chunk_rows;
        self.update(job, table, |t| {
            t.chunks = chunk;
            t.rows += emitted;
            if let Some(k) = last_key.clone() {
                t.last_key = Some(k);
            }
            if done {
                t.state = TableState::Done;
            }
        });
        let read_so_far = progress.rows + emitted;
        if done || last_line.elapsed() >= PROGRESS_EVERY {
            *last_line = Instant::now();
            let estimate = progress.estimate.max(shape.estimate).max(read_so_far);
            if done {
                tracing::info!(target: CONSOLE_TARGET, slot = %self.slot.name, "[{}] Backfilled {}: {} rows in {} chunks.", self.slot.name, progress.table, read_so_far, chunk);
            } else if progress.estimate.max(shape.estimate) == 0 {
                // Never analyzed: no estimate to compare with.
                tracing::info!(target: CONSOLE_TARGET, slot = %self.slot.name, "[{}] Backfilling {}: {} rows so far.", self.slot.name, progress.table, read_so_far);
            } else {
                tracing::info!(target: CONSOLE_TARGET, slot = %self.slot.name, "[{}] Backfilling {}: {} of ~{} rows ({}%).", self.slot.name, progress.table, read_so_far, estimate, read_so_far * 100 / estimate.max(1));
            }
        }
        if let Some(rate) = self.slot.snapshot.max_rows_per_sec {
            let budget = Duration::from_secs_f64(count as f64 / rate as f64);
            if let Some(rest) = budget.checked_sub(started.elapsed()) {
                tokio::time::sleep(rest).await;
            }
        }
        Ok(())
    }

    fn update(&self, job: usize, table: usize, f: impl FnOnce(&mut TableProgress)) {
        if let Ok(mut s) = self.state.lock() {
            if let Some(t) = s.jobs.get_mut(job).and_then(|j| j.tables.get_mut(table)) {
                f(t);
            }
        }
        self.checkpoints.backfill_changed();
        self.publish();
    }

    fn finish_jobs(&self) {
        let finished = self
            .state
            .lock()
            .ok()
            .and_then(|mut s| s.finish_job_if_done());
        if let Some(job) = finished {
            let failed: Vec<&str> = job
                .tables
                .iter()
                .filter(|t| t.state == TableState::Failed)
                .map(|t| t.table.as_str())
                .collect();
            let what = if job.initial {
                "initial snapshot"
            } else {
                "backfill"
            };
            if failed.is_empty() {
                tracing::info!(slot = %self.slot.name, "{what} {} finished: {} table(s)", job.id, job.tables.len());
            } else {
                tracing::warn!(slot = %self.slot.name, "{what} {} finished; not backfilled: {} (see the errors above)", job.id, failed.join(", "));
            }
            self.checkpoints.backfill_changed();
            self.publish();
        }
    }

    /// Metrics and `status` lines from the state.
    fn publish(&self) {
        let Ok(s) = self.state.lock() else { return };
        self.metrics
            .backfill_progress(s.tables_remaining(), status_lines(&s));
    }
}

/// One line per table of the queued jobs, for `status`.
pub fn status_lines(s: &BackfillState) -> Vec<String> {
    s.last
        .iter()
        .chain(&s.jobs)
        .flat_map(|j| j.tables.iter().map(move |t| (j, t)))
        .map(|(j, t)| {
            let state = match t.state {
                TableState::Pending if t.chunks == 0 => "waiting".to_string(),
                TableState::Pending if t.estimate == 0 => format!("{} rows so far", t.rows),
                TableState::Pending => format!(
                    "{} of ~{} rows ({}%)",
                    t.rows,
                    t.estimate.max(t.rows),
                    t.rows * 100 / t.estimate.max(t.rows).max(1)
                ),
                TableState::Done => format!("done, {} rows", t.rows),
                TableState::Failed => {
                    format!("failed: {}", t.error.as_deref().unwrap_or("see the log"))
                }
            };
            let kind = if j.initial { "snapshot" } else { "backfill" };
            format!("{kind} {}: {state}", t.table)
        })
        .collect()
}

#[derive(Debug)]
enum ChunkError {
    /// The table cannot be backfilled (no key, missing, a bad filter).
    Table(TableError),
    /// A connection or a watermark failed: try the chunk again.
    Retry(String),
    SessionEnded,
}

impl ChunkError {
    fn from_table(e: TableError) -> ChunkError {
        match &e {
            TableError::Query { source, .. } if source.is_transient() => {
                ChunkError::Retry(e.to_string())
            }
            _ => ChunkError::Table(e),
        }
    }
}
