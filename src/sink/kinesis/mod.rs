//! The Kinesis sink: per-shard pacing, `PutRecords`, partial-failure retry,
//! per-key order, KPL aggregation.
//!
//! Owns the delivery loop for one slot: it takes [`Item`]s from the slot's bounded
//! queue, learns the stream's shards (`shards`), paces each shard against its limits
//! and backs off only a throttled shard (`pace`), keeps per-key order through
//! partial failures with one queue per key (`schedule`), packs records into KPL
//! aggregates when asked (`aggregate`), keeps several requests in flight, and reports
//! each accepted record to the [`AckTracker`]. It never drops a record: a record
//! either is accepted or stops the slot with an error.

pub mod aggregate;
mod answer;
mod body;
mod cbor;
mod describe;
mod linger;
mod pace;
mod request;
mod route;
mod schedule;
mod settle;
pub mod shards;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::ack::AckTracker;
use crate::config::{Aggregation, BatchConfig};
use crate::lsn::Lsn;
use crate::sink::oversize::Uploads;
use crate::sink::{Item, CHUNK_ITEMS};
use crate::telemetry::Console;
use answer::Answer;
pub use pace::ShardLimits;
use request::Outcome;
pub use route::RoutedSink;
use schedule::{Limits, Scheduler, Unit};
pub use settle::backoff;
use shards::ShardMap;

/// Kinesis' own per-record limit (data plus partition key) when the stream does
/// not say otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Kinesis' limit on records per `PutRecords` request.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// How often the shard map is listed again when nothing suggests a change (an
/// on-demand stream scales without telling its producers).
const SHARD_MAP_REFRESH: Duration = Duration::from_secs(300);
/// The least time between two listings prompted by answers from unexpected shards.
const SHARD_MAP_MIN_INTERVAL: Duration = Duration::from_secs(10);
/// An aggregate takes at most this share of a shard's bytes per second, so a hot
/// key's aggregates flow steadily instead of one a second.
const AGGREGATE_SHARE_OF_SHARD: usize = 4;

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
    /// User records (row changes) Kinesis accepted, aggregated or not.
    pub records_put: AtomicU64,
    /// Bytes of those user records (data plus partition keys).
    pub bytes_put: AtomicU64,
    pub put_requests: AtomicU64,
    /// Kinesis records accepted: an aggregate counts once.
    pub kinesis_records_put: AtomicU64,
    pub records_retried: AtomicU64,
    pub throttled_records: AtomicU64,
    /// Largest number of Kinesis records in one request so far.
    pub max_request_records: AtomicU64,
    /// Times the shard map was listed.
    pub shard_map_loads: AtomicU64,
}

/// Delivery settings and the client for one slot's stream.
#[derive(Debug, Clone)]
pub struct KinesisSink {
    client: aws_sdk_kinesis::Client,
    slot: String,
    stream: String,
    batch: BatchConfig,
    /// The largest record the stream takes, once `prepare` learned it.
    record_limit: std::sync::OnceLock<usize>,
    /// Where claim checks' full records go (`oversize: s3`).
    s3: Option<aws_sdk_s3::Client>,
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
            record_limit: std::sync::OnceLock::new(),
            s3: None,
        }
    }

    /// Store claim checks' full records with this client before sending them.
    pub fn with_s3(mut self, client: aws_sdk_s3::Client) -> Self {
        self.s3 = Some(client);
        self
    }

    pub fn stream(&self) -> &str {
        &self.stream
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
        // The slot's share of the process memory budget: records held until accepted
        // plus the request bodies in flight.
        let budget = self.batch.buffer_bytes.max(1);
        let shard_limits = ShardLimits {
            records_per_sec: self.batch.shard_records_per_sec,
            bytes_per_sec: self.batch.shard_bytes_per_sec,
        };
        let record_limit = self
            .record_limit
            .get()
            .copied()
            .or(self.batch.max_record_bytes)
            .unwrap_or(DEFAULT_MAX_RECORD_BYTES);
        let limits = Limits {
            max_units: max_records,
            max_bytes,
            aggregate_bytes: (self.batch.aggregation == Aggregation::Kpl).then(|| {
                let share = match shard_limits.bytes_per_sec {
                    0 => usize::MAX,
                    b => usize::try_from(b).unwrap_or(usize::MAX) / AGGREGATE_SHARE_OF_SHARD,
                };
                record_limit.min(max_bytes).min(share.max(64 * 1024))
            }),
        };
        let mut sched = Scheduler::new(self.shard_map(&stats).await, shard_limits);
        let mut uploads = Uploads::new(self.s3.clone(), &self.slot);
        let mut in_flight: JoinSet<(Vec<Unit>, usize, Outcome)> = JoinSet::new();
        let protocol = Arc::new(body::Wire::new(self.batch.wire_format));
        let mut wire_bytes = 0usize;
        let mut refresh: JoinSet<ShardMap> = JoinSet::new();
        let mut last_listing = Instant::now();
        let mut refresh_wanted = false;
        let mut closed = false;
        let mut next_due: Option<Instant> = None;
        // The last item taken was a record, not a commit: its transaction's next
        // records are on their way.
        let mut open_txn = false;
        let mut console = Console::new(&self.slot);
        console.waiting(0);

        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                    let (units, wire, outcome) = done.map_err(|e| SinkError::Permanent {
                        stream: self.stream.clone(),
                        reason: format!("a PutRecords task failed: {e}"),
                    })?;
                    wire_bytes -= wire;
                    refresh_wanted |= self.settle(units, outcome, &mut sched, &mut tracker, &stats)?;
                    acked.send_if_modified(|a| replace_if_moved(a, tracker.acked()));
                }
                stored = uploads.next(), if !uploads.is_empty() => {
                    let (partition_key, seq) = stored.map_err(|reason| SinkError::Permanent {
                        stream: self.stream.clone(),
                        reason,
                    })?;
                    sched.stored(&partition_key, seq);
                }
                Some(map) = refresh.join_next(), if !refresh.is_empty() => {
                    if let Ok(map) = map {
                        if map.is_known() && map != *sched.map() {
                            tracing::info!(slot = %self.slot, stream = %self.stream, shards = map.shard_count(), "the stream's shards changed: now {} open shards", map.shard_count());
                            sched.remap(map);
                        }
                    }
                }
                chunk = rx.recv(), if !closed && sched.held_bytes() + wire_bytes + uploads.bytes() < budget => {
                    match chunk {
                        None => closed = true,
                        Some(chunk) => {
                            // One clock read per wake-up, for every chunk it drains.
                            let arrived = Instant::now();
                            for item in chunk {
                                open_txn = matches!(item, Item::Record(_));
                                self.absorb(item, arrived, &mut sched, &mut tracker, &mut uploads)?;
                            }
                            while sched.held_bytes() + wire_bytes + uploads.bytes() < budget {
                                match rx.try_recv() {
                                    Ok(chunk) => {
                                        for item in chunk {
                                            open_txn = matches!(item, Item::Record(_));
                                            self.absorb(item, arrived, &mut sched, &mut tracker, &mut uploads)?;
                                        }
                                    }
                                    Err(_) => break,
                                }
                            }
                            acked.send_if_modified(|a| replace_if_moved(a, tracker.acked()));
                        }
                    }
                }
                _ = sleep_until(next_due), if next_due.is_some() => {}
            }

            let now = Instant::now();
            let since = now.duration_since(last_listing);
            if refresh.is_empty()
                && (since >= SHARD_MAP_REFRESH
                    || (refresh_wanted && since >= SHARD_MAP_MIN_INTERVAL))
            {
                refresh_wanted = false;
                last_listing = now;
                let sink = self.clone();
                let stats = stats.clone();
                refresh.spawn(async move { sink.shard_map(&stats).await });
            }
            next_due = None;
            while in_flight.len() < max_in_flight && !sched.is_empty() {
                // A partial request may wait for more records (see `linger`).
                let ready = sched.ready_keys();
                let moment = linger::Moment {
                    full: match limits.aggregate_bytes {
                        // An aggregate takes a key's whole backlog.
                        Some(_) => sched.len() >= max_records,
                        None => ready >= max_records,
                    },
                    closed,
                    in_flight: in_flight.len(),
                    open_txn,
                    aggregated: limits.aggregate_bytes.is_some(),
                    backlog: ready < sched.len(),
                    pressed: 2 * (sched.held_bytes() + wire_bytes + uploads.bytes()) >= budget,
                };
                if moment.waits() {
                    let since = sched.linger_since().unwrap_or(now);
                    if now.duration_since(since) < linger {
                        next_due = Some(since + linger);
                        break;
                    }
                }
                let units = sched.next_request(now, limits);
                if units.is_empty() {
                    next_due = sched.next_wake(now);
                    break;
                }
                console.sending(
                    sched.len() + rx.len() * CHUNK_ITEMS,
                    units.iter().map(|u| u.members.len()).sum(),
                    max_records,
                );
                stats.put_requests.fetch_add(1, Ordering::Relaxed);
                stats
                    .max_request_records
                    .fetch_max(units.len() as u64, Ordering::Relaxed);
                let wire: usize = units.iter().map(Unit::wire_size).sum();
                wire_bytes += wire;
                let client = self.client.clone();
                let stream = self.stream.clone();
                let (protocol, slot) = (protocol.clone(), self.slot.clone());
                in_flight.spawn(async move {
                    // The body is written here, once; the SDK sends it (see `body`).
                    // The answer is read here too, once (see `answer`).
                    let prepared = body::prepare(protocol.format(), &stream, &units);
                    let answer = Answer::new(units.len());
                    let result = client
                        .put_records()
                        .stream_name(&stream)
                        .set_records(Some(Vec::new()))
                        .customize()
                        .interceptor(prepared)
                        .interceptor(answer.clone())
                        .send()
                        .await;
                    if answer.cbor_unreadable() && protocol.fall_back() {
                        tracing::warn!(slot = %slot, stream = %stream, "Kinesis answered a CBOR request with a body that is not a CBOR PutRecords answer (kinesalite cuts its CBOR answers after 16 KiB); sending JSON from now on. Set `wire_format: json` for this endpoint to start with JSON");
                    }
                    let outcome = request::classify(units.len(), result, answer.take());
                    (units, wire, outcome)
                });
            }
            if in_flight.is_empty() && !sched.is_empty() && next_due.is_none() && uploads.is_empty()
            {
                // Records wait, nothing is in flight and nothing will wake the loop:
                // that should not happen; look again shortly rather than stall.
                tracing::debug!(slot = %self.slot, queued = sched.len(), "nothing sendable and nothing in flight; polling");
                next_due = Some(now + Duration::from_millis(100));
            }
            if in_flight.is_empty() && sched.is_empty() {
                console.waiting(rx.len());
                if closed {
                    return Ok(());
                }
            }
        }
    }
}

/// The start-up warning for a slot whose partition keys are coarse: without
/// aggregation one key carries one record per round trip.
pub fn coarse_key_warning(
    partition_key: &crate::config::PartitionKey,
    aggregation: Aggregation,
) -> Option<String> {
    use crate::config::PartitionKey;
    let what = match partition_key {
        PartitionKey::Table => "`partition_key: table` puts every change of a table under one key",
        PartitionKey::Fixed(_) => {
            "`partition_key: {fixed: ...}` puts every change of the slot under one key"
        }
        PartitionKey::PrimaryKey | PartitionKey::Columns(_) => return None,
    };
    (aggregation == Aggregation::None).then(|| {
        format!(
            "{what}; to keep per-key order one record per key is in flight, so at 20-40 ms per \
             PutRecords a key moves about 25-50 changes a second. Set `aggregation: kpl` to \
             send thousands of changes a second per key (up to the shard's 1 MiB/s), in order"
        )
    })
}

/// Publish a new acknowledged position only when it moved: every send wakes the
/// session.
fn replace_if_moved(current: &mut Lsn, acked: Lsn) -> bool {
    if *current == acked {
        return false;
    }
    *current = acked;
    true
}

async fn sleep_until(when: Option<Instant>) {
    match when {
        Some(when) => tokio::time::sleep_until(when.into()).await,
        None => std::future::pending().await,
    }
}
