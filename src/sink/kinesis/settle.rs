//! What the sink does with what comes in: an item from the slot's queue enters the
//! scheduler in delivery order ([`KinesisSink::absorb`]), and an answer from
//! `PutRecords` is applied to its units ([`KinesisSink::settle`]): accepted records go
//! to the acknowledgement tracker, failed ones back to their keys with a backoff, a
//! throttled shard backs off alone.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rand::Rng;

use super::request::{self, Outcome};
use super::schedule::{Entry, Scheduler, Unit};
use super::{KinesisSink, SinkError, SinkStats};
use crate::ack::AckTracker;
use crate::sink::oversize::Uploads;
use crate::sink::Item;

/// First retry delay; doubles per attempt up to [`MAX_BACKOFF`].
const BASE_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl KinesisSink {
    /// Take one item in delivery order. A claim check enters its key's queue at once
    /// (its place in the key's order) but waits there until its object is stored.
    pub(super) fn absorb(
        &self,
        item: Item,
        now: Instant,
        sched: &mut Scheduler,
        tracker: &mut AckTracker,
        uploads: &mut Uploads,
    ) -> Result<(), SinkError> {
        match item {
            Item::Record(mut record) => {
                let seq = tracker.register_record();
                let offload = record.offload.take();
                let mut entry = Entry::arrived(seq, record, now);
                if let Some(offload) = offload {
                    entry.waiting = true;
                    uploads
                        .start(seq, entry.record.partition_key.clone(), *offload)
                        .map_err(|reason| SinkError::Permanent {
                            stream: self.stream.clone(),
                            reason,
                        })?;
                }
                sched.push(entry);
            }
            Item::Commit(lsn) => tracker.register_commit(lsn),
        }
        Ok(())
    }

    /// Apply one answer. Returns whether an answer came from a shard the map did not
    /// predict (time to list the shards again).
    pub(super) fn settle(
        &self,
        units: Vec<Unit>,
        outcome: Outcome,
        sched: &mut Scheduler,
        tracker: &mut AckTracker,
        stats: &SinkStats,
    ) -> Result<bool, SinkError> {
        let now = Instant::now();
        match outcome {
            Outcome::Permanent { reason } => Err(SinkError::Permanent {
                stream: self.stream.clone(),
                reason,
            }),
            Outcome::RetryAll { reason, throttled } => {
                let records: usize = units.iter().map(|u| u.members.len()).sum();
                stats
                    .records_retried
                    .fetch_add(records as u64, Ordering::Relaxed);
                let attempts = units
                    .iter()
                    .flat_map(|u| u.members.iter().map(|e| e.attempts))
                    .max()
                    .unwrap_or(0);
                let delay = backoff(attempts);
                tracing::warn!(slot = %self.slot, stream = %self.stream, records, retry_in = %crate::telemetry::secs(delay), "PutRecords not accepted, will retry: {reason}");
                if throttled {
                    stats
                        .throttled_records
                        .fetch_add(units.len() as u64, Ordering::Relaxed);
                }
                let mut shards: Vec<usize> = units.iter().map(|u| u.shard).collect();
                for unit in units {
                    // When throttled, the shards in the request back off and their
                    // keys wait for them; otherwise the keys back off.
                    sched.failed(unit, (!throttled).then_some(now + delay));
                }
                if throttled {
                    shards.sort_unstable();
                    shards.dedup();
                    for shard in shards {
                        sched.shard_throttled(shard, now);
                    }
                }
                Ok(false)
            }
            Outcome::Partial { results } => {
                let mut unexpected_shard = false;
                let mut failed = 0u64;
                // Counted here and added once per answer, not once per record.
                let (mut put, mut bytes, mut kinesis_put) = (0u64, 0u64, 0u64);
                let mut throttled_shards = Vec::new();
                // Handed to the tracker together, once the answer is read.
                let mut accepted = Vec::with_capacity(units.iter().map(|u| u.members.len()).sum());
                for (unit, result) in units.into_iter().zip(results) {
                    match result {
                        request::RecordResult::Accepted { shard_id } => {
                            if sched.map().is_known()
                                && shard_id
                                    .as_deref()
                                    .is_some_and(|id| id != sched.map().id(unit.shard))
                            {
                                unexpected_shard = true;
                            }
                            accepted.extend(unit.members.iter().map(|e| e.seq));
                            put += unit.members.len() as u64;
                            bytes += unit.user_bytes() as u64;
                            kinesis_put += 1;
                            sched.accepted(unit);
                        }
                        request::RecordResult::Throttled => {
                            failed += unit.members.len() as u64;
                            stats.throttled_records.fetch_add(1, Ordering::Relaxed);
                            throttled_shards.push(unit.shard);
                            sched.failed(unit, None);
                        }
                        request::RecordResult::Failed => {
                            failed += unit.members.len() as u64;
                            let attempts =
                                unit.members.iter().map(|e| e.attempts).max().unwrap_or(0);
                            sched.failed(unit, Some(now + backoff(attempts)));
                        }
                    }
                }
                tracker.accept_all(&mut accepted);
                stats.records_put.fetch_add(put, Ordering::Relaxed);
                stats.bytes_put.fetch_add(bytes, Ordering::Relaxed);
                stats
                    .kinesis_records_put
                    .fetch_add(kinesis_put, Ordering::Relaxed);
                // Once per shard and answer: the backoff grows per throttled answer,
                // not per throttled record.
                throttled_shards.sort_unstable();
                throttled_shards.dedup();
                for shard in throttled_shards {
                    sched.shard_throttled(shard, now);
                }
                if failed > 0 {
                    stats.records_retried.fetch_add(failed, Ordering::Relaxed);
                    tracing::debug!(slot = %self.slot, failed, "retrying the records Kinesis did not accept");
                }
                Ok(unexpected_shard)
            }
        }
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
