//! The stub's fault script: which faults are armed (record failures, throttles, 5xx
//! answers, stalls) and the seeded random source that decides which requests and
//! records they hit, so a seed gives the same pattern every run. Applying them to a
//! request is `put_records.rs`'s job.

use std::time::Instant;

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

#[derive(Debug, Clone)]
pub(super) struct Faults {
    pub(super) record_failure_rate: f64,
    pub(super) record_error: RecordError,
    pub(super) throttle_next: u32,
    pub(super) throttle_rate: f64,
    pub(super) server_error_next: u32,
    pub(super) server_error_status: u16,
    pub(super) stall: Option<(Instant, StallMode)>,
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

/// Deterministic xorshift64*: reproducible fault patterns for a given seed.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        // xorshift is stuck at zero forever.
        Rng(seed.max(1))
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// True with probability `p`.
    pub(super) fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}
