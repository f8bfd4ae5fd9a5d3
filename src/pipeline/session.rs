//! One replication session of one slot: connect, stream, deliver, confirm.
//!
//! Owns the reader side of the slot: it reads XLogData, decodes it, encodes
//! records and hands them to the sink through a bounded queue, and it sends the
//! standby status updates. Backpressure: when the queue is full the session stops
//! reading the socket, so a slow Kinesis slows the walsender instead of filling
//! memory. It confirms to PostgreSQL only what the acknowledgement tracker says
//! Kinesis has accepted, never more.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::catalog::Catalog;
use super::preflight::{self, SlotPlan};
use super::reader::{pass_restarts, queue_start_backfills, take_requests, Reader};
use super::{SlotError, SlotState, SlotStatus};
use crate::ack::{AckTracker, Confirmed};
use crate::backfill::window::Windows;
use crate::backfill::{Backfiller, Links};
use crate::checkpoint::Checkpointer;
use crate::config::SlotConfig;
use crate::decode;
use crate::lsn::Lsn;
use crate::record::tables::TableRouter;
use crate::record::RecordEncoder;
use crate::signal;
use crate::sink::kinesis::{RoutedSink, SinkStats};
use crate::sink::{Item, CHUNK_BYTES, CHUNK_ITEMS};
use crate::source::{ReplicationMessage, ReplicationStream};

/// Opening the slot: inspected, created, and the rules its records are encoded with.
mod open;
use open::{expand_partitioned, inspect_slot, open_slot, oversize_rule, shape_rules};

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
        // Every stream the slot routes to must exist before the slot is created.
        let mut sink = RoutedSink::new(self.kinesis.clone(), slot);
        let oversize = oversize_rule(slot);
        if oversize.may_offload() {
            let aws = self.credentials.aws();
            sink = sink.with_s3(crate::sink::oversize::s3_client(
                aws,
                slot.region.as_deref(),
            ));
        }
        let max_record_bytes = sink.prepare().await?;
        if let Some(warning) =
            crate::sink::kinesis::coarse_key_warning(&slot.partition_key, slot.batch.aggregation)
        {
            tracing::warn!(slot = %slot.name, "{warning}");
        }
        let created = matches!(plan, SlotPlan::Create);
        let start = open_slot(slot, &sql, plan, self.status).await?;
        let (mut options, format) = decode::effective_options(&slot.options);
        let shape_rules = shape_rules(slot);
        if shape_rules.root.any() {
            options = expand_partitioned(slot, &sql, options).await?;
        }
        queue_start_backfills(slot, self.checkpoints, &sql, &options, created, start).await?;
        // The catalog lookups (unchanged TOAST, partition roots) reuse this connection.
        let sql = shape_rules.uses_catalog().then_some(sql);
        let mut catalog = Catalog::new(slot.name.clone(), params.clone(), sql);
        self.checkpoints.confirmed(start);

        let mut decoder = decode::decoder_for(format);
        let mut encoder = TableRouter::new(
            RecordEncoder::new(slot.db_name.clone(), slot.partition_key.clone())
                .with_format(slot.name.clone(), &slot.format)
                .with_shape_rules(shape_rules.clone()),
            &slot.tables,
            &slot.kns_stream,
        );
        if slot.tables.hashes() && slot.tables.mask_salt.is_none() {
            tracing::warn!(slot = %slot.name, "`sha256` column masks without `mask_salt` are unsalted: a guessed value (an e-mail address, a phone number) can be checked against its hash; set mask_salt");
        }

        let mut repl = ReplicationStream::connect(&params).await?;
        repl.on_notice(self.status.metrics.skipped.hook(&slot.name));
        repl.start(&slot.name, Lsn::ZERO, &options).await?;
        let streams: Vec<&str> = sink.streams().collect();
        tracing::info!(slot = %slot.name, stream = %slot.kns_stream, start = %start, ?format, "streaming from {} to Kinesis stream(s) {:?}", params.endpoint(), streams);
        self.status.set(SlotState::Streaming);

        let (tx, rx) = mpsc::channel::<Vec<Item>>((slot.queue_capacity / CHUNK_ITEMS).max(1));
        let (ack_tx, mut ack_rx) = watch::channel(start);
        let tracker = AckTracker::new(start);
        let mut reader = Reader::new(start);
        reader.accepted = tracker.accepted_count();
        reader.oversize = oversize;
        // Backfills: this session's task beside the reader, linked by two channels.
        let run = signal::new_id();
        let (rows_tx, mut rows_rx) = mpsc::channel(1);
        let (notes_tx, notes_rx) = mpsc::unbounded_channel();
        reader.windows = Windows::new(slot.name.clone(), run.clone());
        reader.notes = Some(notes_tx);
        let status: &SlotStatus = self.status;
        let backfiller = Backfiller {
            slot,
            credentials: self.credentials,
            run,
            state: self.checkpoints.backfill(),
            checkpoints: self.checkpoints,
            metrics: &status.metrics,
            acked: ack_rx.clone(),
            style: crate::backfill::table::ValueStyle {
                numeric_as_string: decode::numbers_as_strings(&options),
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
                        Some(rows) => {
                            if let Some(chunk) = &rows.rows {
                                let lsn = reader.txn.commit_lsn.unwrap_or_default();
                                catalog.prepare_table(encoder.shapes_mut(), &shape_rules, &chunk.schema, &chunk.name, lsn).await?;
                            }
                            reader.windows.deliver(rows)
                        }
                        // The backfill task ended: the window emits nothing.
                        None => reader.windows.abandon(),
                    }
                    reader.absorb(&mut encoder, max_record_bytes)?;
                    take_requests(&mut reader, self.checkpoints);
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
                    // Then the messages already buffered, under the same limits, without
                    // another turn of this select (which re-arms every branch above): the
                    // branches above wait at most for what is buffered (one read, or one
                    // chunk of records). A signal ends the burst where the select's order
                    // did: a restart stops reading right after the message that asked.
                    let mut next = Some(msg?);
                    let mut signalled = false;
                    // The time messages were read, for the catalog's cache ages and the lag
                    // metrics' first read of a transaction: a clock read per 64 messages
                    // of a burst, not one per message, and after a catalog lookup.
                    let (mut read_at, mut burst) = (last_heard, 0u32);
                    while let Some(msg) = next.take() {
                    burst += 1;
                    if burst % 64 == 0 {
                        read_at = Instant::now();
                    }
                    match msg {
                        ReplicationMessage::XLogData { wal_start, data, .. } => {
                            decoder.feed(wal_start, &data, &mut events)?;
                            self.status.metrics.observe(&events, read_at);
                            // Before the encoder needs them: the shapes of new or changed tables.
                            let lsn = reader.txn.commit_lsn.unwrap_or(wal_start);
                            read_at = catalog.prepare(encoder.shapes_mut(), &shape_rules, &events, (lsn, read_at)).await?;
                            reader.pending.extend(events.drain(..));
                            reader.absorb(&mut encoder, max_record_bytes)?;
                            signalled |= !reader.requests.is_empty() || !reader.restarts.is_empty();
                            take_requests(&mut reader, self.checkpoints);
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
                    // A window waiting for its chunk's rows needs the rows branch first.
                    if !signalled && reader.out.len() < CHUNK_ITEMS && reader.out_bytes < CHUNK_BYTES && reader.pending.is_empty() && !reader.windows.waiting() {
                        next = repl.try_recv()?;
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
