//! The stub's shards, modelled on Kinesis: hash-key ranges that split the 128-bit space
//! evenly, routing by the MD5 of the partition key (or an ExplicitHashKey), resharding
//! that closes the old shards and opens new ones, and each shard's throughput limits
//! over a sliding one-second window plus a scripted throttle.
//!
//! Must never route differently from Kinesis: the sink under test builds its shard map
//! from `ListShards` and the same MD5 rule, and a test relies on the two agreeing.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

/// The window the per-shard limits are counted over.
const WINDOW: Duration = Duration::from_secs(1);

/// Per-shard throughput limits (Kinesis: 1,000 records/s and 1 MiB/s per shard).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardLimits {
    pub records_per_sec: u32,
    pub bytes_per_sec: u64,
}

/// Counters of one shard, as [`super::KinesisStub::shard_stats`] reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard_id: String,
    /// False once a reshard closed it.
    pub open: bool,
    /// Kinesis records accepted (a KPL aggregate counts once).
    pub accepted_records: u64,
    /// User records inside the accepted records.
    pub accepted_user_records: u64,
    /// Data plus partition key of the accepted records.
    pub accepted_bytes: u64,
    /// Records answered `ProvisionedThroughputExceededException` by the limits or a
    /// scripted throttle of this shard.
    pub throttled_records: u64,
    /// Accepted records that arrived while [`super::KinesisStub::throttle_shard`] held
    /// some *other* shard of the stream throttled.
    pub accepted_during_other_throttle: u64,
}

pub(super) struct Shard {
    pub(super) start: u128,
    pub(super) end: u128,
    pub(super) parent: Option<String>,
    /// The last sequence number it holds, once closed.
    pub(super) closed_at: Option<u64>,
    /// Every record until then fails with ProvisionedThroughputExceededException.
    pub(super) throttled_until: Option<Instant>,
    /// (arrival, billed bytes) of the records accepted in the last [`WINDOW`].
    window: VecDeque<(Instant, u64)>,
    window_bytes: u64,
    pub(super) stats: ShardStats,
}

/// Why a record was not admitted to its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// A scripted [`super::KinesisStub::throttle_shard`].
    Forced,
    /// Above the records/s or bytes/s limit.
    OverLimit,
}

impl Shard {
    fn new(id: String, start: u128, end: u128, parent: Option<String>) -> Shard {
        Shard {
            start,
            end,
            parent,
            closed_at: None,
            throttled_until: None,
            window: VecDeque::new(),
            window_bytes: 0,
            stats: ShardStats {
                shard_id: id,
                open: true,
                ..ShardStats::default()
            },
        }
    }

    pub(super) fn id(&self) -> &str {
        &self.stats.shard_id
    }

    pub(super) fn is_open(&self) -> bool {
        self.closed_at.is_none()
    }

    pub(super) fn forced_throttle_active(&self, now: Instant) -> bool {
        self.throttled_until.is_some_and(|until| until > now)
    }

    /// Takes one record of `bytes` if the shard may accept it now; counts it either way.
    pub(super) fn admit(
        &mut self,
        now: Instant,
        bytes: u64,
        limits: Option<ShardLimits>,
    ) -> Result<(), Refusal> {
        if self.forced_throttle_active(now) {
            self.stats.throttled_records += 1;
            return Err(Refusal::Forced);
        }
        while let Some(&(at, size)) = self.window.front() {
            if now.duration_since(at) < WINDOW {
                break;
            }
            self.window.pop_front();
            self.window_bytes -= size;
        }
        if let Some(l) = limits {
            if self.window.len() >= l.records_per_sec as usize
                || self.window_bytes + bytes > l.bytes_per_sec
            {
                self.stats.throttled_records += 1;
                return Err(Refusal::OverLimit);
            }
        }
        self.window.push_back((now, bytes));
        self.window_bytes += bytes;
        self.stats.accepted_records += 1;
        self.stats.accepted_bytes += bytes;
        Ok(())
    }
}

/// The shards of one stream, closed ones included (ListShards lists them too).
pub(super) struct Shards {
    pub(super) all: Vec<Shard>,
}

impl Shards {
    pub(super) fn new(count: u32) -> Shards {
        let mut shards = Shards { all: Vec::new() };
        shards.open_new(count.max(1), None);
        shards
    }

    fn open_new(&mut self, count: u32, parents: Option<&[(u128, u128, String)]>) {
        for (start, end) in shard_ranges(count) {
            let index = u32::try_from(self.all.len()).unwrap_or(u32::MAX);
            let parent = parents.and_then(|p| {
                p.iter()
                    .find(|(s, e, _)| (*s..=*e).contains(&start))
                    .map(|(_, _, id)| id.clone())
            });
            self.all
                .push(Shard::new(shard_id(index), start, end, parent));
        }
    }

    /// Closes every open shard at `last_sequence` and opens `count` new ones over the
    /// whole hash space (new ids, each with the old shard it starts in as parent).
    pub(super) fn reshard(&mut self, count: u32, last_sequence: u64) {
        let mut parents = Vec::new();
        for shard in self.all.iter_mut().filter(|s| s.is_open()) {
            shard.closed_at = Some(last_sequence);
            shard.stats.open = false;
            parents.push((shard.start, shard.end, shard.id().to_string()));
        }
        self.open_new(count.max(1), Some(&parents));
    }

    pub(super) fn open(&self) -> impl Iterator<Item = &Shard> {
        self.all.iter().filter(|s| s.is_open())
    }

    /// Index in `all` of the open shard `hash` falls in.
    pub(super) fn route(&self, hash: u128) -> usize {
        self.all
            .iter()
            .position(|s| s.is_open() && (s.start..=s.end).contains(&hash))
            // Open ranges always cover the whole space; this is unreachable.
            .unwrap_or(0)
    }

    /// Index in `all` of the `n`-th open shard.
    pub(super) fn nth_open(&self, n: usize) -> Option<usize> {
        self.all
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_open())
            .nth(n)
            .map(|(i, _)| i)
    }
}

/// `shardId-000000000000`, Kinesis' format.
pub(super) fn shard_id(index: u32) -> String {
    format!("shardId-{index:012}")
}

/// Hash-key range of each shard: the 128-bit space split evenly, as CreateStream does.
pub(super) fn shard_ranges(shards: u32) -> Vec<(u128, u128)> {
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

/// The hash key Kinesis routes a record by: the ExplicitHashKey (decimal) when given,
/// else the MD5 of the partition key's UTF-8 bytes read as a big-endian 128-bit number.
/// `None` for an ExplicitHashKey that is not a decimal 128-bit number.
pub(super) fn hash_key(partition_key: &str, explicit_hash_key: Option<&str>) -> Option<u128> {
    match explicit_hash_key {
        Some(text) => text.parse::<u128>().ok(),
        None => Some(md5_hash_key(partition_key)),
    }
}

pub(super) fn md5_hash_key(partition_key: &str) -> u128 {
    let mut digest = [0u8; 16];
    digest.copy_from_slice(Md5::digest(partition_key.as_bytes()).as_slice());
    u128::from_be_bytes(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ranges_cover_the_hash_space_without_gaps() {
        let ranges = shard_ranges(3);
        assert_eq!(ranges[0].0, 0);
        assert_eq!(ranges[2].1, u128::MAX);
        assert_eq!(ranges[0].1 + 1, ranges[1].0);
        assert_eq!(ranges[1].1 + 1, ranges[2].0);
    }

    #[test]
    fn hash_key_is_the_big_endian_md5_of_the_key_as_kinesis_computes_it() {
        // MD5("") = d41d8cd98f00b204e9800998ecf8427e (RFC 1321 test suite).
        assert_eq!(md5_hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e_u128);
        // MD5("abc") = 900150983cd24fb0d6963f7d28e17f72.
        assert_eq!(
            hash_key("abc", None),
            Some(0x900150983cd24fb0d6963f7d28e17f72)
        );
        assert_eq!(hash_key("abc", Some("42")), Some(42));
        assert_eq!(hash_key("abc", Some("not a number")), None);
    }

    #[test]
    fn routing_follows_the_ranges_and_resharding_moves_it_to_new_shards() {
        let mut shards = Shards::new(4);
        // "abc" hashes to 0x9001... which is in the third quarter.
        assert_eq!(shards.route(md5_hash_key("abc")), 2);
        assert_eq!(shards.route(0), 0);
        assert_eq!(shards.route(u128::MAX), 3);
        shards.reshard(2, 99);
        assert_eq!(shards.open().count(), 2);
        assert_eq!(shards.all.len(), 6);
        let i = shards.route(md5_hash_key("abc"));
        assert_eq!(shards.all[i].id(), "shardId-000000000005");
        assert_eq!(
            shards.all[i].parent.as_deref(),
            Some("shardId-000000000002")
        );
        assert_eq!(shards.all[0].closed_at, Some(99));
        assert_eq!(shards.nth_open(0), Some(4));
    }

    #[test]
    fn limits_count_records_and_bytes_over_a_sliding_second() {
        let mut shards = Shards::new(1);
        let shard = &mut shards.all[0];
        let limits = Some(ShardLimits {
            records_per_sec: 3,
            bytes_per_sec: 1_000,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(shard.admit(t0, 100, limits), Ok(()));
        }
        assert_eq!(shard.admit(t0, 100, limits), Err(Refusal::OverLimit));
        let t1 = t0 + Duration::from_millis(1_001);
        assert_eq!(shard.admit(t1, 900, limits), Ok(()));
        assert_eq!(shard.admit(t1, 200, limits), Err(Refusal::OverLimit));
        assert_eq!(shard.admit(t1, 100, limits), Ok(()));
        assert_eq!(shard.admit(t1, 1, None), Ok(()), "no limits, no refusal");
        shard.throttled_until = Some(t1 + Duration::from_secs(1));
        assert_eq!(shard.admit(t1, 1, None), Err(Refusal::Forced));
        assert_eq!(
            (shard.stats.accepted_records, shard.stats.throttled_records),
            (6, 3)
        );
    }
}
