//! A scripted Kinesis stand-in for the faults kinesalite cannot produce (it never
//! throttles or fails a record): per-record `FailedRecordCount` failures, whole-request
//! throttling, 5xx answers, stalls, and streams that do not exist. It speaks the same
//! awsJson1.1 protocol as Kinesis, so the streamer talks to it through the real SDK.
//!
//! Owns: the stream/record store, the fault script and the counters. The HTTP and JSON
//! side lives in `stub/wire.rs`, PutRecords and its faults in `stub/put_records.rs`. Must never store a record it answered as failed, nor
//! answer success for a record it did not store: tests count on that to prove loss.
#![allow(dead_code)]

mod base64;
mod put_records;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use aws_config::SdkConfig;
use aws_sdk_kinesis::Client;

/// The same limit Kinesis enforces on one PutRecords call.
pub const MAX_RECORDS_PER_REQUEST: usize = 500;
/// Data plus partition key of one record.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;
/// Data plus partition keys of one PutRecords call.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;

/// One accepted record, in the order the stub accepted it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StubRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub shard_id: String,
    pub sequence_number: String,
    pub arrived: Instant,
}

/// Which per-record error code a failed record gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordError {
    /// `ProvisionedThroughputExceededException`, the common case under load.
    Throughput,
    /// `InternalFailure`.
    Internal,
    /// Either, chosen at random per record.
    Mixed,
}

/// What a stalled PutRecords call does once held. (hyper does not notice a client that
/// hangs up mid-request, so the outcome is fixed here rather than left to the client.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallMode {
    /// Held until the stall ends, then answered 503 ServiceUnavailable; nothing stored.
    Unavailable,
    /// Held until the stall ends, then processed normally: a client that timed out and
    /// retried meanwhile sees its records twice.
    Slow,
    /// Stored at once, answer held until the stall ends: a lost response, so a client
    /// that times out and retries produces duplicates.
    LostResponse,
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
}

#[derive(Debug, Clone)]
struct Faults {
    record_failure_rate: f64,
    record_error: RecordError,
    throttle_next: u32,
    throttle_rate: f64,
    server_error_next: u32,
    server_error_status: u16,
    stall: Option<(Instant, StallMode)>,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            record_failure_rate: 0.0,
            record_error: RecordError::Throughput,
            throttle_next: 0,
            throttle_rate: 0.0,
            server_error_next: 0,
            server_error_status: 500,
            stall: None,
        }
    }
}

struct StubStream {
    shards: u32,
    records: Vec<StubRecord>,
    next_sequence: u64,
    created: SystemTime,
}

/// Deterministic xorshift64*: reproducible fault patterns for a given seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift is stuck at zero forever.
        Rng(seed.max(1))
    }

    fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

struct State {
    streams: HashMap<String, StubStream>,
    faults: Faults,
    rng: Rng,
    stats: StubStats,
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
        let shared: Shared = Arc::new(Mutex::new(State {
            streams: HashMap::new(),
            faults: Faults::default(),
            rng: Rng::new(seed),
            stats: StubStats::default(),
        }));
        let (endpoint, shutdown) = wire::serve(shared.clone());
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

    pub fn sdk_config(&self) -> SdkConfig {
        super::kinesis::sdk_config(&self.endpoint)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.sdk_config())
    }

    /// Creates (or empties and re-creates) an ACTIVE stream.
    pub fn create_stream(&self, name: &str, shards: u32) {
        lock(&self.shared)
            .streams
            .insert(name.to_string(), StubStream::new(shards));
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
    fn new(shards: u32) -> StubStream {
        StubStream {
            shards: shards.max(1),
            records: Vec::new(),
            next_sequence: 1,
            created: SystemTime::now(),
        }
    }
}

/// `shardId-000000000000`, Kinesis' format.
fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Hash-key range of each shard: the 128-bit space split evenly, as CreateStream does.
fn shard_ranges(shards: u32) -> Vec<(u128, u128)> {
    let step = u128::MAX / u128::from(shards);
    (0..shards)
        .map(|i| {
            let start = step * u128::from(i);
            let end = if i + 1 == shards {
                u128::MAX
            } else {
                step * u128::from(i + 1) - 1
            };
            (start, end)
        })
        .collect()
}

/// The shard a record lands on. Kinesis hashes the key with MD5; any stable hash keeps
/// the property tests rely on (one key, one shard), so FNV-1a does here.
fn shard_for(shards: u32, partition_key: &str, explicit_hash_key: Option<&str>) -> u32 {
    let hash = match explicit_hash_key.and_then(|k| k.parse::<u128>().ok()) {
        Some(h) => h,
        None => {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for b in partition_key.as_bytes() {
                h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
            }
            u128::from(h) << 64
        }
    };
    let step = u128::MAX / u128::from(shards);
    u32::try_from(hash / step)
        .unwrap_or(u32::MAX)
        .min(shards - 1)
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

    #[test]
    fn shard_ranges_cover_the_hash_space_and_match_shard_for() {
        let ranges = shard_ranges(3);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[2].1, u128::MAX);
        assert_eq!(ranges[0].1 + 1, ranges[1].0);
        for key in ["a", "b", "customer-42", ""] {
            let s = shard_for(3, key, None);
            assert!(s < 3);
            assert_eq!(s, shard_for(3, key, None));
        }
        assert_eq!(shard_for(3, "x", Some(&u128::MAX.to_string())), 2);
        assert_eq!(shard_for(3, "x", Some("0")), 0);
    }
}
