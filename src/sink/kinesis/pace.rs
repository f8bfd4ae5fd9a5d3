//! Per-shard pacing and throttle backoff.
//!
//! Owns when a shard may take more: each shard accepts a number of records and bytes
//! per second (1,000 and 1 MiB on a provisioned stream), and Kinesis fails the excess
//! record by record. Sending at most that much in any window of a little over one
//! second keeps throttling rare, and a throttled shard backs off on its own (with
//! jitter) while the other shards keep full speed. It never decides what to send.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// The window over which a shard's limits are counted. Slightly longer than one
/// second: requests reach Kinesis a round trip after they were counted here, so a
/// window of exactly one second would still overrun by the jitter.
const WINDOW: Duration = Duration::from_millis(1050);

/// A shard's limits; `0` means "do not pace" (an on-demand stream that scales, or a
/// layout that is not known).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLimits {
    pub records_per_sec: u64,
    pub bytes_per_sec: u64,
}

impl ShardLimits {
    pub const NONE: ShardLimits = ShardLimits {
        records_per_sec: 0,
        bytes_per_sec: 0,
    };
}

/// What one shard has been sent lately, and whether it is backing off.
#[derive(Debug)]
pub struct ShardPace {
    limits: ShardLimits,
    /// (sent at, records, bytes), oldest first, within the last [`WINDOW`].
    sent: VecDeque<(Instant, u64, u64)>,
    records: u64,
    bytes: u64,
    /// Throttled: nothing goes to this shard before this instant.
    blocked_until: Option<Instant>,
    /// Throttles in a row without an accepted record between them.
    throttle_attempt: u32,
}

impl ShardPace {
    pub fn new(limits: ShardLimits) -> Self {
        ShardPace {
            limits,
            sent: VecDeque::new(),
            records: 0,
            bytes: 0,
            blocked_until: None,
            throttle_attempt: 0,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(&(at, records, bytes)) = self.sent.front() {
            if now.duration_since(at) < WINDOW {
                break;
            }
            self.records -= records;
            self.bytes -= bytes;
            self.sent.pop_front();
        }
    }

    /// Whether the shard may take `records` more records of `bytes` now. A record
    /// larger than a whole window's byte allowance may go once the window is empty.
    pub fn allows(&mut self, now: Instant, records: u64, bytes: u64) -> bool {
        if self.blocked_until.is_some_and(|t| t > now) {
            return false;
        }
        self.expire(now);
        let l = self.limits;
        let records_ok = l.records_per_sec == 0 || self.records + records <= l.records_per_sec;
        let bytes_ok =
            l.bytes_per_sec == 0 || self.bytes + bytes <= l.bytes_per_sec || self.bytes == 0;
        records_ok && bytes_ok
    }

    /// Bytes the shard may still take in the current window (`usize::MAX` when
    /// unpaced); an empty window takes one record of any size.
    pub fn bytes_left(&mut self, now: Instant) -> usize {
        self.expire(now);
        if self.limits.bytes_per_sec == 0 || self.bytes == 0 {
            return usize::MAX;
        }
        usize::try_from(self.limits.bytes_per_sec.saturating_sub(self.bytes)).unwrap_or(usize::MAX)
    }

    /// Count what was just sent.
    pub fn sent(&mut self, now: Instant, records: u64, bytes: u64) {
        if self.limits == ShardLimits::NONE {
            return;
        }
        self.records += records;
        self.bytes += bytes;
        match self.sent.back_mut() {
            // Several units of one request: one entry.
            Some(last) if last.0 == now => {
                last.1 += records;
                last.2 += bytes;
            }
            _ => self.sent.push_back((now, records, bytes)),
        }
    }

    /// When the shard may take more (after a throttle, or once the window moves).
    pub fn next_opening(&self, now: Instant) -> Instant {
        if let Some(t) = self.blocked_until.filter(|t| *t > now) {
            return t;
        }
        self.sent.front().map_or(now, |(at, ..)| *at + WINDOW)
    }

    #[cfg(test)]
    fn is_blocked(&self, now: Instant) -> bool {
        self.blocked_until.is_some_and(|t| t > now)
    }

    /// Kinesis throttled records of this shard: back off this shard only.
    pub fn throttled(&mut self, now: Instant) {
        let delay = super::backoff(self.throttle_attempt);
        self.throttle_attempt = self.throttle_attempt.saturating_add(1);
        let until = now + delay;
        self.blocked_until = Some(self.blocked_until.map_or(until, |t| t.max(until)));
    }

    /// Kinesis accepted a record of this shard.
    pub fn accepted(&mut self) {
        self.throttle_attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVISIONED: ShardLimits = ShardLimits {
        records_per_sec: 1000,
        bytes_per_sec: 1024 * 1024,
    };

    #[test]
    fn a_shard_takes_at_most_its_limits_per_window() {
        let mut p = ShardPace::new(PROVISIONED);
        let t0 = Instant::now();
        assert!(p.allows(t0, 600, 1000));
        p.sent(t0, 600, 1000);
        assert!(p.allows(t0, 400, 1000));
        assert!(!p.allows(t0, 401, 1000), "records over the limit");
        assert!(!p.allows(t0, 1, 1024 * 1024), "bytes over the limit");
        assert_eq!(p.next_opening(t0), t0 + WINDOW);
        let later = t0 + WINDOW;
        assert!(p.allows(later, 1000, 1024 * 1024), "the window moved on");
    }

    #[test]
    fn an_oversized_record_goes_into_an_empty_window() {
        let mut p = ShardPace::new(ShardLimits {
            records_per_sec: 1000,
            bytes_per_sec: 1000,
        });
        let t0 = Instant::now();
        assert!(p.allows(t0, 1, 5000));
        p.sent(t0, 1, 5000);
        assert!(!p.allows(t0, 1, 10));
    }

    #[test]
    fn throttling_blocks_the_shard_with_growing_backoff_until_accepted() {
        let mut p = ShardPace::new(PROVISIONED);
        let t0 = Instant::now();
        p.throttled(t0);
        assert!(p.is_blocked(t0));
        assert!(!p.allows(t0, 1, 1));
        let first = p.next_opening(t0) - t0;
        assert!(first <= Duration::from_millis(50), "{first:?}");
        let t1 = p.next_opening(t0);
        assert!(p.allows(t1, 1, 1));
        for _ in 0..6 {
            p.throttled(t1);
        }
        assert!(p.next_opening(t1) - t1 >= Duration::from_millis(200));
        p.accepted();
        let t2 = p.next_opening(t1);
        p.throttled(t2);
        assert!(
            p.next_opening(t2) - t2 <= Duration::from_millis(50),
            "reset by an acceptance"
        );
    }

    #[test]
    fn unpaced_shards_only_back_off() {
        let mut p = ShardPace::new(ShardLimits::NONE);
        let t0 = Instant::now();
        p.sent(t0, 1_000_000, 1 << 40);
        assert!(p.allows(t0, 1_000_000, 1 << 40));
        assert_eq!(p.next_opening(t0), t0);
    }
}
