//! One replication session of one slot: connect, stream, deliver, confirm.
//!
//! Owns the reader side of the slot: it reads XLogData, decodes it, encodes
//! records and hands them to the sink through a bounded queue, and it sends the
//! standby status updates. Backpressure: when the queue is full the session stops
//! reading the socket, so a slow Kinesis slows the walsender instead of filling
//! memory. It confirms to PostgreSQL only what the acknowledgement tracker says
//! Kinesis has accepted, never more.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::preflight::{self, SlotPlan};
use super::{SlotError, SlotState, SlotStatus};
use crate::ack::{AcceptedCount, AckTracker, Confirmed};
use crate::backfill::window::{Emit, Step, Windows};
use crate::backfill::{self, Backfiller, Links, Note};
use crate::checkpoint::Checkpointer;
use crate::config::SlotConfig;
use crate::decode::{self, Event};
use crate::lsn::Lsn;
use crate::record::{Record, RecordEncoder, TxnContext};
use crate::signal::{self, Signal};
use crate::sink::kinesis::{KinesisSink, SinkStats};
use crate::sink::{Item, CHUNK_BYTES, CHUNK_ITEMS};
use crate::source::{self, ConnectParams, ReplicationMessage, ReplicationStream};

/// Confirm progress at most this often when it moves, besides the periodic update,
/// to keep the redelivery window after a crash small.
const PROMPT_CONFIRM_INTERVAL: Duration = Duration::from_millis(250);
/// Each periodic status update asks the server for a reply, so a connection that
/// stays silent this many status intervals (and at least `MIN_SILENCE`) is dead
/// (a half-open TCP connection would otherwise wait forever).
const SILENT_INTERVALS: u32 = 3;
const MIN_SILENCE: Duration = Duration::from_secs(30);

/// How long the walsender may take to end COPY after our CopyDone at shutdown.
const FINISH_TIMEOUT: Duration = Duration::from_secs(5);

/// How a session ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionEnd {
    Shutdown,
    /// A restart was requested (`restart` signal): start a new session at once.
    Restart,
}

pub struct Session<'a> {
    pub slot: &'a SlotConfig,
    /// Password, secret or IAM token for each connect.
    pub credentials: &'a crate::credentials::Credentials,
    pub kinesis: aws_sdk_kinesis::Client,
    pub status: &'a SlotStatus,
    /// Where confirmed positions are checkpointed (never ahead of `send_status`).
    pub checkpoints: &'a Checkpointer,
    pub stats: Arc<SinkStats>,
    pub shutdown: watch::Receiver<bool>,
    pub shutdown_timeout: Duration,
    /// Where restart signals read from the WAL go ([`super::restart`]).
    pub restarts: &'a super::restart::Restarts,
    /// Woken when this slot is to restart: the session ends as on shutdown.
    pub wake: &'a tokio::sync::Notify,
}

impl Session<'_> {
    pub async fn run(mut self) -> Result<SessionEnd, SlotError> {
        let slot = self.slot;
        let mut params = self.credentials.connect_params().await?;
        let (sql, plan) = match inspect_slot(slot, &params).await {
            // A rotated secret: fetch it again and retry once before backing off.
            Err(SlotError::Source(e))
                if e.is_auth_failure() && self.credentials.refresh_after_auth_failure().await? =>
            {
                params = self.credentials.connect_params().await?;
                inspect_slot(slot, &params).await?
            }
            other => other?,
        };
        // The checkpoint against the slot (a missing slot before creating it).
        self.checkpoints.verify_start(plan.seen()).await?;
        // Kinesis before the slot is created: a wrong stream name or a missing region
        // must stop the slot before a new replication slot starts holding WAL.
        preflight::require_region(slot, &self.kinesis)?;
        let sink = KinesisSink::new(
            self.kinesis.clone(),
            &slot.name,
            &slot.kns_stream,
            slot.batch.clone(),
        );
        let max_record_bytes = sink.prepare().await?;
        if let Some(warning) =
            crate::sink::kinesis::coarse_key_warning(&slot.partition_key, slot.batch.aggregation)
        {
            tracing::warn!(slot = %slot.name, "{warning}");
        }
        let created = matches!(plan, SlotPlan::Create);
        let start = open_slot(slot, &sql, plan, self.status).await?;
        let (options, format) = decode::effective_options(&slot.options);
        queue_start_backfills(slot, self.checkpoints, &sql, &options, created, start).await?;
        drop(sql);
        self.checkpoints.confirmed(start);

        let mut decoder = decode::decoder_for(format);
        let mut encoder = RecordEncoder::new(slot.db_name.clone(), slot.partition_key.clone());

        let mut repl = ReplicationStream::connect(&params).await?;
        repl.on_notice(self.status.metrics.skipped.hook(&slot.name));
        repl.start(&slot.name, Lsn::ZERO, &options).await?;
        tracing::info!(slot = %slot.name, stream = %slot.kns_stream, start = %start, ?format, "streaming from {} to Kinesis stream {:?}", params.endpoint(), slot.kns_stream);
        self.status.set(SlotState::Streaming);

        let (tx, rx) = mpsc::channel::<Vec<Item>>((slot.queue_capacity / CHUNK_ITEMS).max(1));
        let (ack_tx, mut ack_rx) = watch::channel(start);
        let tracker = AckTracker::new(start);
        let mut reader = Reader::new(start);
        reader.accepted = tracker.accepted_count();
        // Backfills: this session's task beside the reader, linked by two channels.
        let run = signal::new_id();
        let (rows_tx, mut rows_rx) = mpsc::channel(1);
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        reader.windows = Windows::new(slot.name.clone(), run.clone());
        reader.notes = Some(notes_tx.clone());
        let status: &SlotStatus = self.status;
        let backfiller = Backfiller {
            slot,
            params: params.clone(),
            run,
            state: self.checkpoints.backfill(),
            checkpoints: self.checkpoints,
            metrics: &status.metrics,
            acked: ack_rx.clone(),
            style: crate::backfill::table::ValueStyle {
                numeric_as_string: numeric_as_string(&options),
            },
        };
        let backfill_task = backfiller.run(Links { rows_tx, notes_rx });
        tokio::pin!(backfill_task);
        let mut backfill_ended = false;
        let mut sent = Confirmed::new(start);
        let mut sink_task = tokio::spawn(sink.run(rx, tracker, ack_tx, self.stats.clone()));
        // If this session ends with an error, its sink must not keep sending beside
        // the next session's: it would interleave old retries with the replay.
        let _abort_sink = AbortOnDrop(sink_task.abort_handle());

        let mut events = Vec::new();
        let mut ticker =
            tokio::time::interval(Duration::from_secs(slot.status_interval_secs.max(1)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = Instant::now();
        let status_interval = Duration::from_secs(slot.status_interval_secs.max(1));
        let silence_limit = (status_interval * SILENT_INTERVALS).max(MIN_SILENCE);
        let mut last_heard = Instant::now();
        // An acknowledgement arrived within PROMPT_CONFIRM_INTERVAL of the last update.
        let mut confirm_pending = false;
        // A restart was requested: read no more, hand over what was read, then end.
        let mut restarting = false;

        loop {
            if restarting && reader.out.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                changed = self.shutdown.changed() => {
                    if changed.is_err() || *self.shutdown.borrow() {
                        break;
                    }
                }
                _ = self.wake.notified(), if !restarting => {
                    tracing::info!(slot = %slot.name, "[{}] restart requested: ending this session and starting a new one", slot.name);
                    restarting = true;
                }
                _ = &mut backfill_task, if !backfill_ended => {
                    backfill_ended = true;
                }
                // The reader waits at a low watermark for its chunk's rows.
                rows = rows_rx.recv(), if reader.windows.waiting() => {
                    match rows {
                        Some(rows) => reader.windows.deliver(rows),
                        // The backfill task ended: the window emits nothing.
                        None => reader.windows.abandon(),
                    }
                    reader.absorb(&mut encoder, max_record_bytes)?;
                    take_requests(&mut reader, self.checkpoints, &notes_tx);
                    pass_restarts(&mut reader, self.restarts, slot);
                }
                joined = &mut sink_task => {
                    // The sink only returns early with an error; a clean return needs a closed queue.
                    return Err(match joined {
                        Ok(Err(e)) => e.into(),
                        Ok(Ok(())) => SlotError::Internal("the sink stopped while the queue was open".into()),
                        Err(e) => SlotError::Internal(format!("the sink task failed: {e}")),
                    });
                }
                _ = ticker.tick() => {
                    // The WAL monitor saw the server invalidate the slot.
                    if self.status.metrics.is_lost() {
                        return Err(SlotError::SlotLost { slot: slot.name.clone() });
                    }
                    self.status.metrics.acked(*ack_rx.borrow());
                    if !reader.out.is_empty() || !reader.pending.is_empty() {
                        // Not reading by choice (backpressure, or waiting for a
                        // backfill chunk's rows): silence proves nothing.
                        last_heard = Instant::now();
                    } else if last_heard.elapsed() > silence_limit {
                        return Err(SlotError::Silent { secs: last_heard.elapsed().as_secs() });
                    }
                    let acked = *ack_rx.borrow();
                    confirm(&mut repl, self.checkpoints, &mut sent, reader.confirmable(acked), true).await?;
                    last_status = Instant::now();
                }
                changed = ack_rx.changed(), if !confirm_pending => {
                    // Mark the value seen either way, or changed() would fire at once again.
                    let acked = *ack_rx.borrow_and_update();
                    self.status.metrics.acked(acked);
                    if changed.is_ok() {
                        if last_status.elapsed() >= PROMPT_CONFIRM_INTERVAL {
                            confirm(&mut repl, self.checkpoints, &mut sent, reader.confirmable(acked), false).await?;
                            last_status = Instant::now();
                        } else {
                            confirm_pending = true;
                        }
                    }
                }
                _ = tokio::time::sleep_until((last_status + PROMPT_CONFIRM_INTERVAL).into()), if confirm_pending => {
                    confirm_pending = false;
                    let acked = *ack_rx.borrow_and_update();
                    confirm(&mut repl, self.checkpoints, &mut sent, reader.confirmable(acked), false).await?;
                    last_status = Instant::now();
                }
                msg = repl.recv(), if !restarting && reader.out.len() < CHUNK_ITEMS && reader.out_bytes < CHUNK_BYTES && reader.pending.is_empty() => {
                    last_heard = Instant::now();
                    match msg? {
                        ReplicationMessage::XLogData { wal_start, data, .. } => {
                            decoder.feed(wal_start, &data, &mut events)?;
                            self.status.metrics.observe(&events);
                            reader.pending.extend(events.drain(..));
                            reader.absorb(&mut encoder, max_record_bytes)?;
                            take_requests(&mut reader, self.checkpoints, &notes_tx);
                            pass_restarts(&mut reader, self.restarts, slot);
                        }
                        ReplicationMessage::Keepalive { wal_end, reply_requested } => {
                            reader.server_wal_end = reader.server_wal_end.max(wal_end);
                            if reply_requested {
                                let acked = *ack_rx.borrow();
                                confirm(&mut repl, self.checkpoints, &mut sent, reader.confirmable(acked), false).await?;
                                last_status = Instant::now();
                            }
                        }
                    }
                }
                // Last: hand over what was read, in chunks; reading continues while
                // messages are already buffered, so chunks fill under load.
                permit = tx.reserve(), if !reader.out.is_empty() => {
                    let Ok(permit) = permit else {
                        return Err(SlotError::Internal("the sink queue closed unexpectedly".into()));
                    };
                    permit.send(reader.take_chunk());
                }
            }
        }

        // Shutdown: stop reading, let the sink finish what it has, confirm it.
        tracing::info!(slot = %slot.name, "stopping: flushing in-flight records (up to {}s)", self.shutdown_timeout.as_secs());
        drop(tx);
        match tokio::time::timeout(self.shutdown_timeout, &mut sink_task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => {
                tracing::error!(slot = %slot.name, "delivery failed during shutdown: {e}")
            }
            Ok(Err(e)) => {
                tracing::error!(slot = %slot.name, "the sink task failed during shutdown: {e}")
            }
            Err(_) => {
                sink_task.abort();
                tracing::warn!(slot = %slot.name, "shutdown timeout: records not yet accepted will be sent again on restart");
            }
        }
        // Everything read was handed over; only what was accepted is confirmed (or,
        // when idle, the server's position as before: a lower value here would move
        // the slot back below what an earlier update and the checkpoint hold).
        let final_lsn = sent.next(
            reader.confirmable(*ack_rx.borrow()),
            self.checkpoints.confirm_limit(),
        );
        match repl.finish(final_lsn, FINISH_TIMEOUT).await {
            Ok(()) => {
                // Only a position PostgreSQL has applied may become the final checkpoint.
                self.checkpoints.finish(final_lsn).await;
                tracing::info!(slot = %slot.name, confirmed = %final_lsn, "stopped; confirmed {final_lsn}");
            }
            Err(e) => tracing::warn!(
                slot = %slot.name,
                "stopped, but the server did not acknowledge the end of replication ({e}); changes after its last confirmed position will be sent again on restart"
            ),
        }
        Ok(if restarting {
            SessionEnd::Restart
        } else {
            SessionEnd::Shutdown
        })
    }
}

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A standby status update, then the checkpoint: only what PostgreSQL was told.
/// What is sent never falls below an earlier update, and waits at the checkpoint's
/// limit until the checkpoint allows more ([`Checkpointer::confirm_limit`]).
async fn confirm(
    repl: &mut ReplicationStream,
    checkpoints: &Checkpointer,
    sent: &mut Confirmed,
    candidate: Lsn,
    reply: bool,
) -> Result<(), SlotError> {
    let lsn = sent.next(candidate, checkpoints.confirm_limit());
    repl.send_status(lsn, reply).await?;
    checkpoints.confirmed(lsn);
    Ok(())
}

/// Connect for slot SQL and judge the slot by `preflight`'s rules (the same `check`
/// applies); nothing is created yet.
async fn inspect_slot(
    slot: &SlotConfig,
    params: &ConnectParams,
) -> Result<(tokio_postgres::Client, SlotPlan), SlotError> {
    let sql = source::sql_connect(params).await?;
    // Before any slot is created: a refused configuration leaves nothing behind.
    let (options, format) = decode::effective_options(&slot.options);
    let tables = source::table_identities(&sql).await?;
    source::check_identities(&slot.partition_key, &options, format, &tables).map_err(|source| {
        SlotError::IdentityLacksKey {
            slot: slot.name.clone(),
            source,
        }
    })?;
    if slot.partition_key == crate::config::PartitionKey::PrimaryKey
        && slot.batch.aggregation == crate::config::Aggregation::None
    {
        let keyless = source::keyless_tables(&options, &tables);
        if !keyless.is_empty() {
            tracing::warn!(slot = %slot.name, tables = %keyless.join(", "), "{} table(s) without a primary key ({}): each is one partition key, so its changes go out one per round trip (about 25-50 a second at real Kinesis latencies) to keep their order. Set `aggregation: kpl` to send thousands a second in order, or add primary keys", keyless.len(), keyless.join(", "));
        }
    }
    let info = source::slot_info(&sql, &slot.name).await?;
    let plan = preflight::judge_slot(slot, info.as_ref(), params)?;
    Ok((sql, plan))
}

/// Create the slot with wal2json if the plan says so; the confirmed position.
async fn open_slot(
    slot: &SlotConfig,
    sql: &tokio_postgres::Client,
    plan: SlotPlan,
    status: &SlotStatus,
) -> Result<Lsn, SlotError> {
    match plan {
        SlotPlan::Resume(at) => Ok(at),
        SlotPlan::Create => {
            let at = source::create_slot(sql, &slot.name).await?;
            status.slot_created(at);
            Ok(at)
        }
    }
}

/// Queue the backfills a start asks for: the initial snapshot (`snapshot: initial`)
/// of a new slot or of one whose checkpoint records none, and the backfill after an
/// accepted gap (`accept_checkpoint_gap: backfill`).
async fn queue_start_backfills(
    slot: &SlotConfig,
    checkpoints: &Checkpointer,
    sql: &tokio_postgres::Client,
    options: &[(String, String)],
    created: bool,
    start: Lsn,
) -> Result<(), SlotError> {
    let state = checkpoints.backfill();
    let has_initial = state.lock().map(|s| s.has_initial()).unwrap_or(true);
    // Without checkpoints nothing records a finished snapshot across restarts: only
    // a new slot gets one.
    let initial = slot.snapshot.mode == crate::config::Snapshot::Initial
        && !has_initial
        && (created || slot.checkpoint.enabled);
    let gap = slot.checkpoint.backfill_gap && checkpoints.gap_accepted();
    if !initial && !gap {
        return Ok(());
    }
    let tables = backfill::streamed_tables(sql, options).await?;
    if initial {
        backfill::request(&state, "initial".into(), tables.clone(), None, true);
        tracing::info!(slot = %slot.name, "initial snapshot of {} table(s) queued: {}", tables.len(), tables.join(", "));
    }
    if gap {
        backfill::request(&state, format!("gap-{start}"), tables.clone(), None, false);
        tracing::warn!(slot = %slot.name, "checkpoint gap accepted (accept_checkpoint_gap: backfill): backfilling {} table(s): {}", tables.len(), tables.join(", "));
    }
    checkpoints.backfill_changed();
    Ok(())
}

/// Whether wal2json prints numbers as strings (a backfill must print them alike).
fn numeric_as_string(options: &[(String, String)]) -> bool {
    options
        .iter()
        .rev()
        .find(|(n, _)| n == "numeric-data-types-as-string")
        .is_some_and(|(_, v)| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "true" | "t" | "1" | "on" | "yes" | "y"
            )
        })
}

/// Backfill requests the reader saw: queue each (once per id), keep the slot from
/// being confirmed past the request until a checkpoint holds it, wake the task.
fn take_requests(
    reader: &mut Reader,
    checkpoints: &Checkpointer,
    notes: &mpsc::UnboundedSender<Note>,
) {
    for (signal, lsn) in reader.requests.drain(..) {
        let Signal::Backfill {
            id, tables, filter, ..
        } = signal
        else {
            continue;
        };
        let state = checkpoints.backfill();
        let what = format!(
            "{} table(s): {}{}",
            tables.len(),
            tables.join(", "),
            filter
                .as_deref()
                .map(|f| format!(" where {f}"))
                .unwrap_or_default()
        );
        if backfill::request(&state, id.clone(), tables, filter, false) {
            checkpoints.hold(lsn);
            tracing::info!(slot = %reader.windows.slot(), lsn = %lsn, "backfill {id} requested: {what}");
            let _ = notes.send(Note::Requested);
        } else {
            tracing::info!(slot = %reader.windows.slot(), lsn = %lsn, "backfill {id} was already taken; ignoring the repeated request");
        }
    }
}

/// Pass the restart signals the reader read to the worker register.
fn pass_restarts(reader: &mut Reader, restarts: &super::restart::Restarts, slot: &SlotConfig) {
    for (target, id) in reader.restarts.drain(..) {
        super::restart::note(restarts, slot, &target, &id);
    }
}

/// The reader's state between messages.
struct Reader {
    out: VecDeque<Item>,
    /// Record bytes in `out`: chunks are bounded by bytes as well as by count, so a
    /// queue of wide rows stays small.
    out_bytes: usize,
    txn: TxnContext,
    seq: u64,
    /// Scratch space for the one or two records of a change.
    encoded: Vec<Record>,
    in_txn: bool,
    /// Records handed to the sink, against `accepted`: nothing is in flight when
    /// the two are equal.
    records_handed: u64,
    /// Records the sink's tracker has seen accepted.
    accepted: AcceptedCount,
    /// The walsender's position from its latest keepalive.
    server_wal_end: Lsn,
    /// Decoded events not yet absorbed: the reader stops at a backfill chunk's low
    /// watermark until the chunk's rows arrive.
    pending: VecDeque<Event>,
    /// The backfill windows of this session.
    windows: Windows,
    /// Where the backfill task hears of closed chunks.
    notes: Option<mpsc::UnboundedSender<Note>>,
    /// Backfill requests read (signal, its LSN), taken by the session.
    requests: Vec<(Signal, Lsn)>,
    /// Restart signals read (slot, id), for the session to pass on.
    restarts: Vec<(String, String)>,
}

impl Reader {
    fn new(start: Lsn) -> Self {
        Reader {
            out: VecDeque::new(),
            out_bytes: 0,
            txn: TxnContext::default(),
            seq: 0,
            encoded: Vec::with_capacity(2),
            in_txn: false,
            records_handed: 0,
            accepted: AcceptedCount::default(),
            server_wal_end: start,
            pending: VecDeque::new(),
            windows: Windows::default(),
            notes: None,
            requests: Vec::new(),
            restarts: Vec::new(),
        }
    }

    /// Encode and queue a backfill's rows as `read` records of the current transaction.
    fn push_reads(
        &mut self,
        emit: Emit,
        encoder: &RecordEncoder,
        max_record_bytes: usize,
    ) -> Result<(), SlotError> {
        for row in &emit.rows {
            let record = encoder.encode_read(row, &self.txn, self.seq, emit.chunk);
            if record.billed_size() > max_record_bytes {
                return Err(SlotError::RecordTooLarge {
                    table: format!("{}.{}", row.schema, row.table),
                    lsn: self.txn.commit_lsn.unwrap_or_default(),
                    size: record.billed_size(),
                    max: max_record_bytes,
                });
            }
            self.seq += 1;
            self.out_bytes += record.billed_size();
            self.out.push_back(Item::Record(record));
        }
        Ok(())
    }

    /// Absorb the pending events, stopping early at a low watermark whose rows
    /// have not arrived.
    fn absorb(
        &mut self,
        encoder: &mut RecordEncoder,
        max_record_bytes: usize,
    ) -> Result<(), SlotError> {
        while let Some(event) = self.pending.pop_front() {
            match event {
                Event::Begin {
                    xid,
                    timestamp,
                    txn_lsn,
                } => {
                    self.txn = TxnContext {
                        xid,
                        timestamp,
                        commit_lsn: txn_lsn,
                    };
                    self.seq = 0;
                    self.in_txn = true;
                }
                Event::Change(change) => {
                    // A backfill row this change overtakes and whose TOASTed value it
                    // leaves out goes first.
                    if let Some(first) = self.windows.on_change(&change) {
                        self.push_reads(first, encoder, max_record_bytes)?;
                    }
                    // A key change is two records; both must fit before either is queued.
                    self.encoded.clear();
                    let n = encoder.encode_into(&change, &self.txn, self.seq, &mut self.encoded)?;
                    if let Some(record) = self
                        .encoded
                        .iter()
                        .find(|r| r.billed_size() > max_record_bytes)
                    {
                        return Err(SlotError::RecordTooLarge {
                            table: format!("{}.{}", change.schema, change.table),
                            lsn: change.lsn.or(self.txn.commit_lsn).unwrap_or_default(),
                            size: record.billed_size(),
                            max: max_record_bytes,
                        });
                    }
                    self.seq += n as u64;
                    for record in self.encoded.drain(..) {
                        self.out_bytes += record.billed_size();
                        self.out.push_back(Item::Record(record));
                    }
                }
                Event::Commit { end_lsn } => {
                    self.in_txn = false;
                    self.out.push_back(Item::Commit(end_lsn));
                    if let Some((table, chunk, rows)) = self.windows.on_commit() {
                        if let Some(notes) = &self.notes {
                            let _ = notes.send(Note::Closed {
                                table,
                                chunk,
                                rows,
                                end_lsn,
                            });
                        }
                    }
                }
                Event::Message {
                    prefix,
                    content,
                    lsn,
                    ..
                } if prefix == signal::PREFIX => {
                    let signal = match signal::parse(&content, lsn) {
                        // Any slot's restart: a stopped slot of this database reads
                        // no WAL, so its signal is passed on from here.
                        Ok(Signal::Restart { slot, id }) => {
                            self.restarts.push((slot, id));
                            continue;
                        }
                        Ok(s) if s.slot() == self.windows.slot() => s,
                        Ok(_) => continue,
                        Err(e) => {
                            tracing::warn!(slot = %self.windows.slot(), "{e}");
                            continue;
                        }
                    };
                    match &signal {
                        Signal::Backfill { .. } => self.requests.push((signal, lsn)),
                        Signal::Restart { .. } => {}
                        Signal::Watermark { .. } => {
                            let (step, emit) = self.windows.on_signal(&signal);
                            if let Some(emit) = emit {
                                self.push_reads(emit, encoder, max_record_bytes)?;
                            }
                            if step == Step::NeedRows {
                                return Ok(());
                            }
                        }
                    }
                }
                Event::Message { .. } => {}
            }
        }
        Ok(())
    }

    /// The next chunk for the sink: up to CHUNK_ITEMS items and about CHUNK_BYTES.
    fn take_chunk(&mut self) -> Vec<Item> {
        let mut chunk = Vec::with_capacity(self.out.len().min(CHUNK_ITEMS));
        let mut bytes = 0;
        while chunk.len() < CHUNK_ITEMS && (chunk.is_empty() || bytes < CHUNK_BYTES) {
            let Some(item) = self.out.pop_front() else {
                break;
            };
            if let Item::Record(record) = &item {
                bytes += record.billed_size();
                self.records_handed += 1;
            }
            chunk.push(item);
        }
        self.out_bytes -= bytes;
        chunk
    }

    /// What may be confirmed: what Kinesis accepted; and when nothing at all is
    /// pending, the walsender's keepalive position, so an idle or filtered slot does
    /// not hold WAL. Transactions that commit after that position are still sent in
    /// full after a restart, because PostgreSQL skips only those that committed
    /// before the confirmed position.
    ///
    /// "Nothing pending" is judged by counting records, never by comparing LSNs:
    /// format-version 1 without `write-in-chunks` and `include-lsn` labels each
    /// transaction with its *first* LSN, which is not in commit order, so a
    /// transaction still in flight can carry a label below one already accepted.
    fn confirmable(&self, acked: Lsn) -> Lsn {
        let idle = !self.in_txn
            && self.out.is_empty()
            && self.pending.is_empty()
            && self.records_handed == self.accepted.get();
        if idle {
            acked.max(self.server_wal_end)
        } else {
            acked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_bounded_by_count_and_bytes() {
        let record = |size: usize| Item::Record(Record::new("k", vec![b'x'; size]));
        let mut r = Reader::new(Lsn(0));
        for _ in 0..5 {
            r.out_bytes += 600 * 1024 + 1;
            r.out.push_back(record(600 * 1024));
        }
        r.out.push_back(Item::Commit(Lsn(9)));
        // Two wide records pass 1 MiB: the chunk closes there.
        assert_eq!(r.take_chunk().len(), 2);
        assert_eq!(r.out_bytes, 3 * (600 * 1024 + 1));
        let mut small = Reader::new(Lsn(0));
        for _ in 0..(CHUNK_ITEMS + 10) {
            small.out_bytes += 11;
            small.out.push_back(record(10));
        }
        assert_eq!(small.take_chunk().len(), CHUNK_ITEMS);
        assert_eq!(small.take_chunk().len(), 10);
        assert_eq!(small.out_bytes, 0);
    }

    #[test]
    fn confirms_keepalive_position_only_when_nothing_is_pending() {
        let mut tracker = AckTracker::new(Lsn(100));
        let mut r = Reader::new(Lsn(100));
        r.accepted = tracker.accepted_count();
        r.server_wal_end = Lsn(500);
        assert_eq!(
            r.confirmable(Lsn(100)),
            Lsn(500),
            "idle slot follows the server"
        );
        r.in_txn = true;
        assert_eq!(
            r.confirmable(Lsn(100)),
            Lsn(100),
            "an open transaction holds the position"
        );
        r.in_txn = false;
        r.records_handed = 1;
        let seq = tracker.register_record();
        tracker.register_commit(Lsn(300));
        assert_eq!(
            r.confirmable(tracker.acked()),
            Lsn(100),
            "an unaccepted record holds the position"
        );
        tracker.accept(seq);
        assert_eq!(r.confirmable(tracker.acked()), Lsn(500));
    }

    /// Hands the reader's next chunk to `tracker` as the sink does; the records' seqs.
    fn hand_over(r: &mut Reader, tracker: &mut AckTracker) -> Vec<u64> {
        let mut seqs = Vec::new();
        for item in r.take_chunk() {
            match item {
                Item::Record(_) => seqs.push(tracker.register_record()),
                Item::Commit(lsn) => tracker.register_commit(lsn),
            }
        }
        seqs
    }

    #[test]
    fn keepalive_is_not_confirmed_past_a_v1_transaction_labelled_below_an_accepted_one() {
        use crate::decode::FormatVersion;
        // format-version 1 without write-in-chunks and include-lsn: the walsender
        // labels each whole transaction with its first LSN. T1 began at 0/100 and
        // committed after T2, which began at 0/200: T2 arrives first.
        let doc = |xid: u32| {
            format!(
                r#"{{"xid":{xid},"timestamp":"2026-01-01 00:00:00+00","change":[{{"kind":"insert","schema":"public","table":"t","columnnames":["id"],"columntypes":["integer"],"columnvalues":[{xid}]}}]}}"#
            )
        };
        let mut decoder = decode::decoder_for(FormatVersion::V1);
        let mut encoder = RecordEncoder::new("db", Default::default());
        let mut tracker = AckTracker::new(Lsn(0x50));
        let mut r = Reader::new(Lsn(0x50));
        r.accepted = tracker.accepted_count();
        let mut events = Vec::new();
        let mut read = |r: &mut Reader, label: u64, xid: u32| {
            decoder
                .feed(Lsn(label), doc(xid).as_bytes(), &mut events)
                .unwrap();
            r.pending.extend(events.drain(..));
            r.absorb(&mut encoder, 1 << 20).unwrap();
        };
        read(&mut r, 0x200, 2);
        for seq in hand_over(&mut r, &mut tracker) {
            tracker.accept(seq);
        }
        read(&mut r, 0x100, 1);
        let in_flight = hand_over(&mut r, &mut tracker);
        r.server_wal_end = Lsn(0x500);
        assert_eq!(tracker.acked(), Lsn(0x200));
        assert_eq!(
            r.confirmable(tracker.acked()),
            Lsn(0x200),
            "T1's record is still in flight: the keepalive position would skip it after a restart"
        );
        tracker.accept(in_flight[0]);
        assert_eq!(r.confirmable(tracker.acked()), Lsn(0x500), "now idle");
    }

    #[test]
    fn status_updates_never_go_below_an_idle_keepalive_confirmation() {
        let mut tracker = AckTracker::new(Lsn(100));
        let mut r = Reader::new(Lsn(100));
        r.accepted = tracker.accepted_count();
        let mut sent = Confirmed::new(Lsn(100));
        // Idle: the server's position is confirmed.
        r.server_wal_end = Lsn(500);
        assert_eq!(sent.next(r.confirmable(tracker.acked()), None), Lsn(500));
        // A transaction arrives and is in flight: the tracker still says 100.
        r.records_handed = 1;
        let seq = tracker.register_record();
        tracker.register_commit(Lsn(700));
        assert_eq!(r.confirmable(tracker.acked()), Lsn(100));
        assert_eq!(
            sent.next(r.confirmable(tracker.acked()), None),
            Lsn(500),
            "a status update below an earlier one moves the slot backwards"
        );
        tracker.accept(seq);
        assert_eq!(sent.next(r.confirmable(tracker.acked()), None), Lsn(700));
    }
}
