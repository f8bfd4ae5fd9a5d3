//! The reader of one replication session: decoded events → records in stream order,
//! with the backfill windows and the signals the stream carries.
//!
//! Owns what the session holds between messages (records not yet handed to the
//! sink, the open transaction, events waiting for a backfill chunk's rows) and what
//! may be confirmed given what Kinesis accepted. The session drives it; it never
//! talks to the network itself.

use std::collections::VecDeque;

use tokio::sync::mpsc;

use super::SlotError;
use crate::ack::AcceptedCount;
use crate::backfill::window::{Emit, Step, Windows};
use crate::backfill::{self, Note};
use crate::checkpoint::Checkpointer;
use crate::config::SlotConfig;
use crate::decode::Event;
use crate::lsn::Lsn;
use crate::record::oversize::{Oversize, Place};
use crate::record::tables::TableRouter;
use crate::record::{Record, TxnContext};
use crate::signal::{self, Signal};
use crate::sink::{Item, CHUNK_BYTES, CHUNK_ITEMS};

/// Queue the backfills a start asks for: the initial snapshot (`snapshot: initial`)
/// of a new slot or of one whose checkpoint records none, and the backfill after an
/// accepted gap (`accept_checkpoint_gap: backfill`).
pub(super) async fn queue_start_backfills(
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
    // An unreadable store says nothing about a finished snapshot: only a new slot
    // gets one then, rather than every table again.
    let initial = slot.snapshot.mode == crate::config::Snapshot::Initial
        && !has_initial
        && (created || (slot.checkpoint.enabled && checkpoints.backfill_known()));
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

/// Backfill requests the reader saw: queue each (once per id), keep the slot from
/// being confirmed past the request until a checkpoint holds it, wake the task.
pub(super) fn take_requests(reader: &mut Reader, checkpoints: &Checkpointer) {
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
            if let Some(notes) = &reader.notes {
                let _ = notes.send(Note::Requested);
            }
        } else {
            tracing::info!(slot = %reader.windows.slot(), lsn = %lsn, "backfill {id} was already taken; ignoring the repeated request");
        }
    }
}

/// Pass the restart signals the reader read to the worker register.
pub(super) fn pass_restarts(
    reader: &mut Reader,
    restarts: &super::restart::Restarts,
    slot: &SlotConfig,
) {
    for (target, id) in reader.restarts.drain(..) {
        super::restart::note(restarts, slot, &target, &id);
    }
}

/// The reader's state between messages.
pub(super) struct Reader {
    pub(super) out: VecDeque<Item>,
    /// Record bytes in `out`: chunks are bounded by bytes as well as by count, so a
    /// queue of wide rows stays small.
    pub(super) out_bytes: usize,
    pub(super) txn: TxnContext,
    pub(super) seq: u64,
    /// Scratch space for the one or two records of a change.
    pub(super) encoded: Vec<Record>,
    pub(super) in_txn: bool,
    /// Records handed to the sink, against `accepted`: nothing is in flight when
    /// the two are equal.
    pub(super) records_handed: u64,
    /// Records the sink's tracker has seen accepted.
    pub(super) accepted: AcceptedCount,
    /// The walsender's position from its latest keepalive.
    pub(super) server_wal_end: Lsn,
    /// Decoded events not yet absorbed: the reader stops at a backfill chunk's low
    /// watermark until the chunk's rows arrive.
    pub(super) pending: VecDeque<Event>,
    /// The backfill windows of this session.
    pub(super) windows: Windows,
    /// Where the backfill task hears of closed chunks.
    pub(super) notes: Option<mpsc::UnboundedSender<Note>>,
    /// Backfill requests read (signal, its LSN), taken by the session.
    pub(super) requests: Vec<(Signal, Lsn)>,
    /// Restart signals read (slot, id), for the session to pass on.
    pub(super) restarts: Vec<(String, String)>,
    /// What a record over the stream's limit does (stop, or a claim check).
    pub(super) oversize: Oversize,
}

impl Reader {
    pub(super) fn new(start: Lsn) -> Self {
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
            oversize: Oversize::default(),
        }
    }

    /// Encode and queue a backfill's rows as `read` records of the current transaction.
    fn push_reads(
        &mut self,
        emit: Emit,
        encoder: &mut TableRouter,
        max_record_bytes: usize,
    ) -> Result<(), SlotError> {
        for mut row in emit.rows {
            let leaf = encoder.report_under_root(&mut row);
            // A table `tables:` skips is never put on a stream, backfilled or not.
            let Some(mut record) = encoder.encode_read(&row, &self.txn, self.seq, emit.chunk)
            else {
                continue;
            };
            if let Some(leaf) = &leaf {
                crate::record::root::mark_partition(&mut record, leaf);
            }
            let at = Place {
                schema: &row.schema,
                table: &row.table,
                commit_lsn: self.txn.commit_lsn,
                lsn: None,
                seq: self.seq,
            };
            self.oversize.admit(&mut record, at, max_record_bytes)?;
            self.seq += 1;
            self.out_bytes += record.held_bytes();
            self.out.push_back(Item::Record(record));
        }
        Ok(())
    }

    /// Absorb the pending events, stopping early at a low watermark whose rows
    /// have not arrived.
    pub(super) fn absorb(
        &mut self,
        encoder: &mut TableRouter,
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
                Event::Change(mut change) => {
                    // A backfill row this change overtakes and whose TOASTed value it
                    // leaves out goes first. The backfill read the leaf or its root.
                    let mut first = self.windows.on_change(&change);
                    let leaf = encoder.report_under_root(&mut change);
                    if leaf.is_some() && first.is_none() {
                        first = self.windows.on_change(&change);
                    }
                    if let Some(first) = first {
                        self.push_reads(first, encoder, max_record_bytes)?;
                    }
                    // A key change is two records; both must fit (or become claim
                    // checks) before either is queued.
                    self.encoded.clear();
                    let n = encoder.encode_into(&change, &self.txn, self.seq, &mut self.encoded)?;
                    for (i, record) in self.encoded.iter_mut().enumerate() {
                        if let Some(leaf) = &leaf {
                            crate::record::root::mark_partition(record, leaf);
                        }
                        let at = Place {
                            schema: &change.schema,
                            table: &change.table,
                            commit_lsn: self.txn.commit_lsn,
                            lsn: change.lsn,
                            seq: self.seq + i as u64,
                        };
                        self.oversize.admit(record, at, max_record_bytes)?;
                    }
                    self.seq += n as u64;
                    for record in self.encoded.drain(..) {
                        self.out_bytes += record.held_bytes();
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
    pub(super) fn take_chunk(&mut self) -> Vec<Item> {
        let mut chunk = Vec::with_capacity(self.out.len().min(CHUNK_ITEMS));
        let mut bytes = 0;
        while chunk.len() < CHUNK_ITEMS && (chunk.is_empty() || bytes < CHUNK_BYTES) {
            let Some(item) = self.out.pop_front() else {
                break;
            };
            if let Item::Record(record) = &item {
                bytes += record.held_bytes();
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
    pub(super) fn confirmable(&self, acked: Lsn) -> Lsn {
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
mod tests;
