//! The model of the real service, as knobs on [`KinesisStub`]: latency per call,
//! per-shard limits, scripted per-shard throttles, resharding, on-demand streams, and
//! the views a test reads back (user records, per-stream and per-shard counters).
//!
//! All off by default, so the fault tests see the stub they always saw. Must never
//! change what the fault script does: the model only adds refusals per record.

use std::time::{Duration, Instant, SystemTime};

use super::ledger::{commit_micros, unix_micros};
use super::shards::{hash_key, ShardLimits, ShardStats};
use super::{kpl, lock, KinesisStub, StreamStats, StubStream, StubUserRecord};

/// The model's settings.
#[derive(Debug, Clone)]
pub(super) struct Model {
    /// How long every PutRecords call takes before it is answered.
    pub(super) latency: Duration,
    pub(super) limits: Option<ShardLimits>,
    /// Streams named in a PutRecords/Describe call that do not exist are created
    /// with this many shards (on demand or not), instead of ResourceNotFound.
    pub(super) auto_create: Option<(u32, bool)>,
    /// Keep every accepted record (tests); off, only counters (long benchmarks).
    pub(super) keep_records: bool,
    /// Streams whose name starts with this get commit-to-acceptance latency samples.
    pub(super) latency_prefix: Option<String>,
}

impl Default for Model {
    fn default() -> Self {
        Model {
            latency: Duration::ZERO,
            limits: None,
            auto_create: None,
            keep_records: true,
            latency_prefix: None,
        }
    }
}

impl KinesisStub {
    /// Every PutRecords call received after this is answered `latency` later (calls
    /// are served concurrently: one slow call holds up no other).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.shared).model.latency = latency;
    }

    /// Per-shard limits, as Kinesis enforces them (1,000 records/s and 1 MiB/s per
    /// shard), over a sliding second: records above them fail with
    /// ProvisionedThroughputExceededException and are not stored. A KPL aggregate
    /// counts as one record and its full size, as Kinesis bills it.
    pub fn set_shard_limits(&self, records_per_sec: u32, bytes_per_sec: u64) {
        lock(&self.shared).model.limits = Some(ShardLimits {
            records_per_sec,
            bytes_per_sec,
        });
    }

    pub fn clear_shard_limits(&self) {
        lock(&self.shared).model.limits = None;
    }

    /// The model of a provisioned stream as the benchmark uses it: `latency` per
    /// call and Kinesis' default per-shard limits scaled by `scale` (1.0: 1,000
    /// records/s and 1 MiB/s).
    pub fn model_kinesis(&self, latency: Duration, scale: f64) {
        self.set_latency(latency);
        self.set_shard_limits(
            (1_000.0 * scale).round().max(1.0) as u32,
            (1_048_576.0 * scale).round().max(1.0) as u64,
        );
    }

    /// Fails every record routed to the `shard_index`-th open shard of `stream` with
    /// ProvisionedThroughputExceededException for `duration`. Panics if there is no
    /// such shard (a bug in the test).
    pub fn throttle_shard(&self, stream: &str, shard_index: usize, duration: Duration) {
        let mut state = lock(&self.shared);
        let s = state
            .streams
            .get_mut(stream)
            .unwrap_or_else(|| panic!("throttle_shard: no stream {stream}"));
        let i = s
            .shards
            .nth_open(shard_index)
            .unwrap_or_else(|| panic!("throttle_shard: {stream} has no open shard {shard_index}"));
        s.shards.all[i].throttled_until = Some(Instant::now() + duration);
    }

    /// Closes every open shard of `stream` and opens `shards` new ones (new ids), as
    /// a resharding does; records keep arriving on the new shards.
    pub fn reshard(&self, stream: &str, shards: u32) {
        let mut state = lock(&self.shared);
        let s = state
            .streams
            .get_mut(stream)
            .unwrap_or_else(|| panic!("reshard: no stream {stream}"));
        let last = s.next_sequence.saturating_sub(1);
        s.shards.reshard(shards, last);
    }

    /// Creates (or re-creates) an ACTIVE stream in on-demand capacity mode.
    pub fn create_on_demand_stream(&self, name: &str, shards: u32) {
        lock(&self.shared)
            .streams
            .insert(name.to_string(), StubStream::new(shards, true));
    }

    /// Streams that do not exist are created on first use with `shards` shards.
    pub fn auto_create_streams(&self, shards: u32, on_demand: bool) {
        lock(&self.shared).model.auto_create = Some((shards, on_demand));
    }

    /// Off: accepted records are counted, not kept ([`KinesisStub::records`] stays
    /// empty), so a long benchmark does not hold every record in memory.
    pub fn keep_records(&self, keep: bool) {
        lock(&self.shared).model.keep_records = keep;
    }

    /// Samples commit-to-acceptance latency of the streams whose name starts with
    /// `prefix` (from each record's `timestamp`, on this machine's clock).
    pub fn sample_latency_of(&self, prefix: &str) {
        lock(&self.shared).model.latency_prefix = Some(prefix.to_string());
    }

    /// The user records of `stream` in arrival order: KPL aggregates flattened into
    /// the records inside, plain records as they are.
    pub fn user_records(&self, stream: &str) -> Vec<StubUserRecord> {
        let records = self.records(stream);
        let mut out = Vec::with_capacity(records.len());
        for r in records {
            let inner = if kpl::is_aggregated(&r.data) {
                kpl::deaggregate(&r.partition_key, &r.data).ok()
            } else {
                None
            };
            match inner {
                Some(inner) => {
                    out.extend(inner.into_iter().enumerate().map(|(i, u)| StubUserRecord {
                        partition_key: u.partition_key,
                        explicit_hash_key: u.explicit_hash_key,
                        data: u.data,
                        shard_id: r.shard_id.clone(),
                        sequence_number: r.sequence_number.clone(),
                        sub_sequence: i,
                        aggregated: true,
                        arrived: r.arrived,
                    }));
                }
                None => out.push(StubUserRecord {
                    partition_key: r.partition_key,
                    explicit_hash_key: None,
                    data: r.data,
                    shard_id: r.shard_id,
                    sequence_number: r.sequence_number,
                    sub_sequence: 0,
                    aggregated: false,
                    arrived: r.arrived,
                }),
            }
        }
        out
    }

    /// Counters of one stream (default if it does not exist).
    pub fn stream_stats(&self, stream: &str) -> StreamStats {
        lock(&self.shared)
            .streams
            .get(stream)
            .map(|s| s.ledger.stats.clone())
            .unwrap_or_default()
    }

    /// Counters of each shard of `stream`, closed ones included, in shard-id order.
    pub fn shard_stats(&self, stream: &str) -> Vec<ShardStats> {
        lock(&self.shared)
            .streams
            .get(stream)
            .map(|s| {
                s.shards
                    .all
                    .iter()
                    .map(|shard| shard.stats.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The open shard a record with `partition_key` lands on now.
    pub fn shard_of(&self, stream: &str, partition_key: &str) -> Option<String> {
        let state = lock(&self.shared);
        let s = state.streams.get(stream)?;
        let i = s.shards.route(hash_key(partition_key, None)?);
        Some(s.shards.all[i].id().to_string())
    }

    /// The ids of the open shards of `stream`, in order.
    pub fn open_shards(&self, stream: &str) -> Vec<String> {
        lock(&self.shared)
            .streams
            .get(stream)
            .map(|s| s.shards.open().map(|sh| sh.id().to_string()).collect())
            .unwrap_or_default()
    }
}

impl StubUserRecord {
    /// From its transaction's commit (the record's `timestamp`) to its acceptance by
    /// the stub, on this machine's clock; `None` without a readable `timestamp`.
    pub fn commit_to_acceptance(&self) -> Option<Duration> {
        let committed = commit_micros(&self.data)?;
        let arrived = SystemTime::now().checked_sub(self.arrived.elapsed())?;
        Some(Duration::from_micros(
            u64::try_from(unix_micros(arrived) - committed).unwrap_or(0),
        ))
    }
}
