//! A scripted Kinesis stand-in. It speaks the same awsJson1.1 protocol as Kinesis (and
//! PutRecords in CBOR, as the streamer sends it by default), so
//! the streamer talks to it through the real SDK, and it does two jobs:
//! - faults kinesalite cannot produce (it never throttles or fails a record):
//!   per-record `FailedRecordCount` failures, whole-request throttling, 5xx answers,
//!   stalls, and streams that do not exist;
//! - a model of the real service for delivery tests and `scripts/bench
//!   --kinesis-model`: latency per call, shards with MD5 hash-key routing and
//!   resharding, per-shard records/s and bytes/s limits and scripted per-shard
//!   throttles, KPL aggregates counted by the user records inside, and a per-key order
//!   check on arrival.
//!
//! Owns: the stream/record store, the fault script's state, the model settings and
//! the counters. The HTTP and JSON side lives in `stub/wire.rs`, the fault script in
//! `stub/faults.rs`, PutRecords and its faults in `stub/put_records.rs`, shards and
//! limits in `stub/shards.rs`, per-stream accounting in `stub/ledger.rs`, the model's
//! knobs in `stub/model.rs`. Must never
//! store a record it answered as failed, nor answer success for a record it did not
//! store: tests count on that to prove loss.
//!
//! `examples/bench_sink.rs` includes this file with `#[path]` (one stub for tests and
//! benchmark), so submodules name their files explicitly and nothing here may depend
//! on the rest of `tests/support`.
#![allow(dead_code)]

#[path = "stub/base64.rs"]
mod base64;
#[path = "stub/cbor.rs"]
mod cbor;
#[path = "stub/faults.rs"]
mod faults;
#[path = "stub/kpl.rs"]
mod kpl;
#[path = "stub/ledger.rs"]
mod ledger;
#[path = "stub/model.rs"]
mod model;
#[path = "stub/put_records.rs"]
mod put_records;
#[path = "stub/shards.rs"]
mod shards;
#[path = "stub/wire.rs"]
mod wire;

pub use faults::{RecordError, StallMode};
/// A KPL aggregate of `(partition key, data)` records, for tests of the stub's
/// de-aggregation.
#[cfg(test)]
pub use kpl::aggregate_for_tests as kpl_aggregate;
pub use ledger::StreamStats;
// The benchmark includes this file and names fewer of its types than the tests.
#[allow(unused_imports)]
pub use shards::{ShardLimits, ShardStats};

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_kinesis::Client;

use faults::{Faults, Rng};

/// The same limit Kinesis enforces on one PutRecords call.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Data plus partition key of one record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Data plus partition keys of one PutRecords call (10 MiB since 2025).
pub const MAX_REQUEST_BYTES: usize = 10 * 1024 * 1024;

/// One accepted record, in the order the stub accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub shard_id: String,
    pub sequence_number: String,
    pub arrived: Instant,
}

/// One user record: an accepted record as sent, or one record from inside an
/// accepted KPL aggregate, with the outer record's place on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubUserRecord {
    pub partition_key: String,
    pub explicit_hash_key: Option<String>,
    pub data: Vec<u8>,
    pub shard_id: String,
    /// Of the Kinesis record that carried it.
    pub sequence_number: String,
    /// Its position inside the aggregate (0 for a plain record).
    pub sub_sequence: usize,
    /// True when it came out of a KPL aggregate.
    pub aggregated: bool,
    pub arrived: Instant,
}

/// Counters since start (or the last [`KinesisStub::reset_stats`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StubStats {
    /// Every HTTP request, any operation.
    pub requests: u64,
    pub put_records_requests: u64,
    /// Records in each parsed PutRecords request, in arrival order, faulted or not.
    pub records_per_request: Vec<usize>,
    pub accepted_records: u64,
    /// Records answered with a per-record error code.
    pub failed_records: u64,
    /// Whole requests answered 400 ProvisionedThroughputExceededException.
    pub throttled_requests: u64,
    /// Whole requests answered 5xx.
    pub server_errors: u64,
    pub stalled_requests: u64,
    /// Requests refused for breaking a Kinesis limit (e.g. more than 500 records).
    pub invalid_requests: u64,
    /// Requests naming a stream that does not exist.
    pub not_found: u64,
    /// Records answered ProvisionedThroughputExceededException by the per-shard model
    /// (limits or [`KinesisStub::throttle_shard`]); also counted in `failed_records`.
    pub throttled_records: u64,
    /// User records in the accepted records (an aggregate counts its inner records).
    pub user_records: u64,
    /// Accepted records that were KPL aggregates.
    pub aggregated_records: u64,
    /// User records whose (commit_lsn, seq) went backwards for their partition key.
    pub order_violations: u64,
    /// User records whose (commit_lsn, seq) equals the last one of their key.
    pub duplicates: u64,
}

struct StubStream {
    shards: shards::Shards,
    records: Vec<StubRecord>,
    next_sequence: u64,
    created: SystemTime,
    on_demand: bool,
    ledger: ledger::Ledger,
}

struct State {
    streams: HashMap<String, StubStream>,
    faults: Faults,
    model: model::Model,
    rng: Rng,
    stats: StubStats,
}

impl State {
    /// Creates `name` if the model auto-creates streams and it does not exist.
    fn auto_create(&mut self, name: &str) {
        if let Some((shards, on_demand)) = self.model.auto_create {
            if !name.is_empty() && !self.streams.contains_key(name) {
                self.streams
                    .insert(name.to_string(), StubStream::new(shards, on_demand));
            }
        }
    }
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    // A test that panicked while holding the lock must not hide its own failure behind
    // a poison error in the next call.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running stub, served from its own thread until dropped.
pub struct KinesisStub {
    endpoint: String,
    shared: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl KinesisStub {
    /// Starts on a free local port with fault seed 1.
    pub fn start() -> KinesisStub {
        KinesisStub::with_seed(1)
    }

    pub fn with_seed(seed: u64) -> KinesisStub {
        KinesisStub::on_port(0, seed)
    }

    /// Starts on 127.0.0.1:`port` (0: a free one); panics if it cannot bind.
    pub fn on_port(port: u16, seed: u64) -> KinesisStub {
        let shared: Shared = Arc::new(Mutex::new(State {
            streams: HashMap::new(),
            faults: Faults::default(),
            model: model::Model::default(),
            rng: Rng::new(seed),
            stats: StubStats::default(),
        }));
        let (endpoint, shutdown) = wire::serve(shared.clone(), port);
        KinesisStub {
            endpoint,
            shared,
            shutdown: Some(shutdown),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// SDK settings for this endpoint with throwaway credentials (the same as
    /// `support::kinesis::sdk_config`, repeated so the benchmark can include this file).
    pub fn sdk_config(&self) -> SdkConfig {
        use aws_config::{BehaviorVersion, Region};
        use aws_sdk_kinesis::config::{Credentials, SharedCredentialsProvider};
        let credentials = Credentials::new("AKIDTEST", "test-secret", None, None, "pg-cdc-tests");
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .endpoint_url(&self.endpoint)
            .credentials_provider(SharedCredentialsProvider::new(credentials))
            .build()
    }

    pub fn client(&self) -> Client {
        Client::new(&self.sdk_config())
    }

    /// Creates (or empties and re-creates) an ACTIVE stream.
    pub fn create_stream(&self, name: &str, shards: u32) {
        lock(&self.shared)
            .streams
            .insert(name.to_string(), StubStream::new(shards, false));
    }

    /// Removes a stream: later requests naming it get ResourceNotFoundException.
    pub fn delete_stream(&self, name: &str) {
        lock(&self.shared).streams.remove(name);
    }

    /// Fails each record of every later PutRecords with probability `rate`.
    pub fn fail_records(&self, rate: f64, error: RecordError) {
        let mut state = lock(&self.shared);
        state.faults.record_failure_rate = rate;
        state.faults.record_error = error;
    }

    /// Answers the next `n` PutRecords calls with a whole-request throttle.
    pub fn throttle_next(&self, n: u32) {
        lock(&self.shared).faults.throttle_next = n;
    }

    /// Throttles each later PutRecords call as a whole with probability `rate`.
    pub fn throttle_rate(&self, rate: f64) {
        lock(&self.shared).faults.throttle_rate = rate;
    }

    /// Answers the next `n` PutRecords calls with HTTP `status` (500 InternalFailure,
    /// 503 ServiceUnavailable, ...).
    pub fn server_error_next(&self, n: u32, status: u16) {
        let mut state = lock(&self.shared);
        state.faults.server_error_next = n;
        state.faults.server_error_status = status;
    }

    /// Holds every PutRecords call that arrives in the next `duration` until it ends.
    pub fn stall_for(&self, duration: Duration, mode: StallMode) {
        lock(&self.shared).faults.stall = Some((Instant::now() + duration, mode));
    }

    /// Back to a healthy Kinesis (streams and records stay).
    pub fn clear_faults(&self) {
        lock(&self.shared).faults = Faults::default();
    }

    pub fn reseed(&self, seed: u64) {
        lock(&self.shared).rng = Rng::new(seed);
    }

    /// Accepted records of `stream` in arrival order (empty if it does not exist).
    pub fn records(&self, stream: &str) -> Vec<StubRecord> {
        lock(&self.shared)
            .streams
            .get(stream)
            .map(|s| s.records.clone())
            .unwrap_or_default()
    }

    pub fn record_count(&self, stream: &str) -> usize {
        lock(&self.shared)
            .streams
            .get(stream)
            .map_or(0, |s| s.records.len())
    }

    /// Polls until `stream` holds at least `n` records or `timeout` passes; returns the
    /// records either way.
    pub async fn wait_for_records(
        &self,
        stream: &str,
        n: usize,
        timeout: Duration,
    ) -> Vec<StubRecord> {
        let deadline = Instant::now() + timeout;
        while self.record_count(stream) < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.records(stream)
    }

    pub fn stats(&self) -> StubStats {
        lock(&self.shared).stats.clone()
    }

    pub fn reset_stats(&self) {
        lock(&self.shared).stats = StubStats::default();
    }
}

impl Drop for KinesisStub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl StubStream {
    fn new(shards: u32, on_demand: bool) -> StubStream {
        StubStream {
            shards: shards::Shards::new(shards),
            records: Vec::new(),
            next_sequence: 1,
            created: SystemTime::now(),
            on_demand,
            ledger: ledger::Ledger::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_honours_the_rate() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let hits = (0..10_000).filter(|_| a.chance(0.3)).count();
        let hits_b = (0..10_000).filter(|_| b.chance(0.3)).count();
        assert_eq!(hits, hits_b);
        assert!((2_700..3_300).contains(&hits), "{hits} hits for p=0.3");
        assert!(!Rng::new(0).chance(0.0));
    }
}
