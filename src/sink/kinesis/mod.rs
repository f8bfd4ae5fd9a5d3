//! The Kinesis sink: batching, `PutRecords`, partial-failure retry, per-key order.
//!
//! Owns the delivery loop for one slot: it takes [`Item`]s from the slot's bounded
//! queue, keeps per-key order through partial failures (`schedule`), keeps several
//! requests in flight, retries what Kinesis did not accept with exponential backoff
//! and jitter, and reports each accepted record to the [`AckTracker`]. It never
//! drops a record: a record either is accepted or stops the slot with an error.

pub mod aggregate;
mod request;
mod schedule;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;
use rand::Rng;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::ack::AckTracker;
use crate::config::BatchConfig;
use crate::lsn::Lsn;
use crate::sink::{Item, CHUNK_ITEMS};
use crate::telemetry::{error_chain, Console};
use request::Outcome;
use schedule::{Entry, Scheduler};

/// Kinesis' own per-record limit (data plus partition key) when the stream does
/// not say otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis' limit on records per `PutRecords` request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("Kinesis stream {stream:?}: {reason}")]
    Permanent { stream: String, reason: String },
    #[error("Kinesis stream {stream:?}: {reason} (will retry)")]
    Transient { stream: String, reason: String },
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient { .. })
    }
}

/// Counters for one slot's sink; read by metrics and tests.
#[derive(Debug, Default)]
pub struct SinkStats {
    pub records_put: AtomicU64,
    pub bytes_put: AtomicU64,
    pub put_requests: AtomicU64,
    pub records_retried: AtomicU64,
    pub throttled_records: AtomicU64,
    /// Largest number of records in one request so far.
    pub max_request_records: AtomicU64,
}

/// Delivery settings and the client for one slot's stream.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    slot: String,
    stream: String,
    batch: BatchConfig,
}

impl KinesisSink {
    pub fn new(
        client: aws_sdk_kinesis::Client,
        slot: &str,
        stream: &str,
        batch: BatchConfig,
    ) -> Self {
        KinesisSink {
            client,
            slot: slot.to_string(),
            stream: stream.to_string(),
            batch,
        }
    }

    pub fn stream(&self) -> &str {
        &self.stream
    }

    /// Check that the stream exists and learn its largest record size. A missing
    /// stream stops the slot; not being allowed to describe it is fine.
    pub async fn prepare(&self) -> Result<usize, SinkError> {
        let configured = self.batch.max_record_bytes;
        let result = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await;
        match result {
            Ok(out) => {
                let from_stream = out
                    .stream_description_summary()
                    .and_then(|s| s.max_record_size_in_kib())
                    .and_then(|kib| usize::try_from(kib).ok())
                    .map(|kib| kib * 1024);
                Ok(configured.or(from_stream).unwrap_or(DEFAULT_MAX_RECORD_BYTES))
            }
            Err(SdkError::ServiceError(e)) => match e.err() {
                DescribeStreamSummaryError::ResourceNotFoundException(_) => Err(SinkError::Permanent {
                    stream: self.stream.clone(),
                    reason: "the stream does not exist: create it (or deploy the CDK app), or fix kns_stream/region in the config".into(),
                }),
                other if e.raw().status().is_server_error() || other.code().is_some_and(|c| c.contains("Throttl") || c == "LimitExceededException") => {
                    Err(SinkError::Transient { stream: self.stream.clone(), reason: format!("DescribeStreamSummary failed: {other}") })
                }
                // Access denied, or an emulator without the operation: go on with the configured or default limit.
                other => {
                    tracing::warn!(slot = %self.slot, stream = %self.stream, "cannot describe the stream ({}); assuming records of up to {} bytes", other.code().unwrap_or("error"), configured.unwrap_or(DEFAULT_MAX_RECORD_BYTES));
                    Ok(configured.unwrap_or(DEFAULT_MAX_RECORD_BYTES))
                }
            },
            Err(other) => Err(SinkError::Transient {
                stream: self.stream.clone(),
                reason: format!("cannot reach Kinesis: {}", error_chain(&other)),
            }),
        }
    }

    /// Deliver everything from `rx` until it closes and all is accepted, publishing
    /// the confirmable LSN on `acked`.
    pub async fn run(
        self,
        mut rx: mpsc::Receiver<Vec<Item>>,
        mut tracker: AckTracker,
        acked: watch::Sender<Lsn>,
        stats: Arc<SinkStats>,
    ) -> Result<(), SinkError> {
        let max_records = self.batch.max_records.clamp(1, MAX_RECORDS_PER_REQUEST);
        let max_bytes = self.batch.max_bytes.max(1);
        let max_in_flight = self.batch.max_in_flight.max(1);
        let linger = Duration::from_millis(self.batch.linger_ms);
        // Buffer enough to fill every in-flight slot several times over, bounded.
        let buffer_limit = max_records * max_in_flight * 4;
        // And by bytes, so wide rows cannot fill memory: twice what the in-flight
        // requests can carry.
        let byte_limit = max_bytes.saturating_mul(max_in_flight).saturating_mul(2);
        let mut sched = Scheduler::default();
        let mut in_flight: JoinSet<(Vec<Entry>, Outcome)> = JoinSet::new();
        let mut closed = false;
        let mut throttle_until: Option<Instant> = None;
        let mut throttle_attempt: u32 = 0;
        let mut next_due: Option<Instant> = None;
        let mut console = Console::new(&self.slot);
        console.waiting(0);

        loop {
            let wake = [throttle_until, next_due].into_iter().flatten().min();
            tokio::select! {
                biased;
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let (entries, outcome) = done.map_err(|e| SinkError::Permanent {
                        stream: self.stream.clone(),
                        reason: format!("a PutRecords task failed: {e}"),
                    })?;
                    self.settle(entries, outcome, &mut sched, &mut tracker, &stats, &mut throttle_until, &mut throttle_attempt)?;
                    acked.send_replace(tracker.acked());
                }
                chunk = rx.recv(), if !closed && sched.len() < buffer_limit && sched.buffered_bytes() < byte_limit => {
                    match chunk {
                        None => closed = true,
                        Some(chunk) => {
                            for item in chunk {
                                absorb(item, &mut sched, &mut tracker);
                            }
                            while sched.len() < buffer_limit && sched.buffered_bytes() < byte_limit {
                                match rx.try_recv() {
                                    Ok(chunk) => chunk.into_iter().for_each(|item| absorb(item, &mut sched, &mut tracker)),
                                    Err(_) => break,
                                }
                            }
                            acked.send_replace(tracker.acked());
                        }
                    }
                }
                _ = sleep_until(wake), if wake.is_some() => {}
            }

            let now = Instant::now();
            if throttle_until.is_some_and(|t| t <= now) {
                throttle_until = None;
            }
            next_due = None;
            while throttle_until.is_none() && in_flight.len() < max_in_flight && !sched.is_empty() {
                // Under load, let a partial batch fill for up to linger_ms while other
                // requests are in flight: every request costs signing, a round trip and
                // a response to parse. With nothing in flight, send at once (latency).
                let full = sched.len() >= max_records || sched.buffered_bytes() >= max_bytes;
                if !(full || closed || in_flight.is_empty()) {
                    let oldest = sched.oldest_enqueued().unwrap_or(now);
                    if now.duration_since(oldest) < linger {
                        next_due = Some(oldest + linger);
                        break;
                    }
                }
                let batch = sched.next_batch(now, max_records, max_bytes);
                next_due = batch.next_due;
                if batch.entries.is_empty() {
                    break;
                }
                console.sending(
                    sched.len() + rx.len() * CHUNK_ITEMS,
                    batch.entries.len(),
                    max_records,
                );
                stats.put_requests.fetch_add(1, Ordering::Relaxed);
                stats
                    .max_request_records
                    .fetch_max(batch.entries.len() as u64, Ordering::Relaxed);
                let client = self.client.clone();
                let stream = self.stream.clone();
                in_flight.spawn(async move {
                    let result = client
                        .put_records()
                        .stream_name(stream)
                        .set_records(Some(request::entries(&batch.entries)))
                        .send()
                        .await;
                    let outcome = request::classify(batch.entries.len(), result);
                    (batch.entries, outcome)
                });
            }
            if in_flight.is_empty() && sched.is_empty() {
                console.waiting(rx.len());
                if closed {
                    return Ok(());
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        entries: Vec<Entry>,
        outcome: Outcome,
        sched: &mut Scheduler,
        tracker: &mut AckTracker,
        stats: &SinkStats,
        throttle_until: &mut Option<Instant>,
        throttle_attempt: &mut u32,
    ) -> Result<(), SinkError> {
        match outcome {
            Outcome::Permanent { reason } => Err(SinkError::Permanent {
                stream: self.stream.clone(),
                reason,
            }),
            Outcome::RetryAll { reason, throttled } => {
                let attempts = entries.iter().map(|e| e.attempts).max().unwrap_or(0);
                let delay = backoff(attempts);
                stats
                    .records_retried
                    .fetch_add(entries.len() as u64, Ordering::Relaxed);
                if throttled {
                    stats
                        .throttled_records
                        .fetch_add(entries.len() as u64, Ordering::Relaxed);
                    *throttle_attempt += 1;
                    *throttle_until = Some(Instant::now() + backoff(*throttle_attempt));
                }
                tracing::warn!(slot = %self.slot, stream = %self.stream, records = entries.len(), retry_in_ms = delay.as_millis() as u64, "PutRecords not accepted, will retry: {reason}");
                sched.failed(entries, Instant::now() + delay);
                Ok(())
            }
            Outcome::Partial {
                failures,
                throttled,
            } => {
                let mut retry = Vec::new();
                let mut accepted = Vec::with_capacity(entries.len());
                for (entry, failure) in entries.into_iter().zip(failures) {
                    match failure {
                        None => accepted.push(entry),
                        Some(_) => retry.push(entry),
                    }
                }
                if throttled > 0 {
                    stats
                        .throttled_records
                        .fetch_add(throttled as u64, Ordering::Relaxed);
                    *throttle_attempt += 1;
                    *throttle_until = Some(Instant::now() + backoff(*throttle_attempt));
                } else {
                    *throttle_attempt = 0;
                }
                let mut bytes = 0u64;
                for entry in &accepted {
                    tracker.accept(entry.seq);
                    bytes += entry.record.billed_size() as u64;
                }
                stats
                    .records_put
                    .fetch_add(accepted.len() as u64, Ordering::Relaxed);
                stats.bytes_put.fetch_add(bytes, Ordering::Relaxed);
                sched.accepted(&accepted);
                if !retry.is_empty() {
                    let attempts = retry.iter().map(|e| e.attempts).max().unwrap_or(0);
                    stats
                        .records_retried
                        .fetch_add(retry.len() as u64, Ordering::Relaxed);
                    tracing::debug!(slot = %self.slot, failed = retry.len(), "retrying the records Kinesis did not accept");
                    sched.failed(retry, Instant::now() + backoff(attempts));
                }
                Ok(())
            }
        }
    }
}

fn absorb(item: Item, sched: &mut Scheduler, tracker: &mut AckTracker) {
    match item {
        Item::Record(record) => {
            let seq = tracker.register_record();
            sched.push(Entry::new(seq, record));
        }
        Item::Commit(lsn) => tracker.register_commit(lsn),
    }
}

/// Exponential backoff with jitter: 50 ms doubling per attempt, capped at 5 s,
/// then a random point in its upper half so that retries spread out.
pub fn backoff(attempt: u32) -> Duration {
    let exp = BASE_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    let half = exp / 2;
    half + exp.mul_f64(rand::rng().random_range(0.0..0.5))
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..40 {
            let d = backoff(attempt);
            assert!(d <= MAX_BACKOFF, "{attempt}: {d:?}");
            assert!(d >= BASE_BACKOFF / 2, "{attempt}: {d:?}");
        }
        assert!(backoff(6) > backoff(0));
    }
}
