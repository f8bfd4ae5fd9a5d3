//! The stream's shards as Kinesis routes to them: MD5 hash keys against the open
//! shards' hash-key ranges from `ListShards`.
//!
//! Owns the partition key → shard mapping. Kinesis hashes a partition key with MD5
//! and reads the digest as a big-endian 128-bit number; the shard whose range holds
//! that number takes the record (an `ExplicitHashKey` replaces the digest). The map
//! is only a prediction used for pacing: a wrong one costs throughput, never order,
//! because per-key order does not depend on which shard a key lands on. It never
//! sends records.

use aws_sdk_kinesis::error::ProvideErrorMetadata;
use md5::{Digest, Md5};

/// The 128-bit hash key Kinesis derives from a partition key.
pub fn hash_key(partition_key: &str) -> u128 {
    u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into())
}

/// One open shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRange {
    pub id: String,
    pub start: u128,
    pub end: u128,
}

/// The open shards, sorted by their hash-key ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardMap {
    ranges: Vec<ShardRange>,
    /// Learned from `ListShards` (as opposed to the one-range stand-in).
    known: bool,
}

impl ShardMap {
    /// The layout is not known (no `ListShards` permission, an emulator without
    /// it): one range for the whole space, with no id to check answers against.
    pub fn unknown() -> Self {
        ShardMap {
            ranges: vec![ShardRange {
                id: String::new(),
                start: 0,
                end: u128::MAX,
            }],
            known: false,
        }
    }

    /// The map of these open shards. Gaps or an empty list (a stream caught in the
    /// middle of a reshard) fall back to [`ShardMap::unknown`].
    pub fn from_ranges(mut ranges: Vec<ShardRange>) -> Self {
        ranges.sort_by_key(|r| r.start);
        let contiguous = ranges.first().is_some_and(|r| r.start == 0)
            && ranges.last().is_some_and(|r| r.end == u128::MAX)
            && ranges
                .windows(2)
                .all(|w| w[0].end.checked_add(1) == Some(w[1].start));
        if !contiguous {
            return ShardMap::unknown();
        }
        ShardMap {
            ranges,
            known: true,
        }
    }

    pub fn is_known(&self) -> bool {
        self.known
    }

    pub fn shard_count(&self) -> usize {
        self.ranges.len()
    }

    /// Index of the shard that takes `hash`.
    pub fn shard_of(&self, hash: u128) -> usize {
        self.ranges
            .partition_point(|r| r.end < hash)
            .min(self.ranges.len() - 1)
    }

    pub fn id(&self, shard: usize) -> &str {
        &self.ranges[shard].id
    }

    /// A hash key inside the shard, for an `ExplicitHashKey` that routes an
    /// aggregate there: its first hash key.
    pub fn explicit_hash_key(&self, shard: usize) -> Option<String> {
        self.known.then(|| self.ranges[shard].start.to_string())
    }
}

/// Why the shards could not be listed.
#[derive(Debug, thiserror::Error)]
#[error("ListShards on {stream:?} failed ({code}): {message}")]
pub struct ListShardsError {
    pub stream: String,
    pub code: String,
    pub message: String,
}

/// The stream's open shards (closed parents of a reshard have an ending sequence
/// number and take no more records).
pub async fn list_open_shards(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
) -> Result<ShardMap, ListShardsError> {
    let mut ranges = Vec::new();
    let mut next: Option<String> = None;
    loop {
        // The API refuses a stream name beside a continuation token.
        let request = match &next {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request.send().await.map_err(|e| ListShardsError {
            stream: stream.to_string(),
            code: e.code().unwrap_or("unreachable").to_string(),
            message: e
                .message()
                .map(str::to_string)
                .unwrap_or_else(|| crate::telemetry::innermost(&e)),
        })?;
        for shard in page.shards() {
            let open = shard
                .sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none());
            let range = shard.hash_key_range();
            let parse = |s: Option<&str>| s.and_then(|s| s.parse::<u128>().ok());
            if let (true, Some(start), Some(end)) = (
                open,
                parse(range.map(|r| r.starting_hash_key())),
                parse(range.map(|r| r.ending_hash_key())),
            ) {
                ranges.push(ShardRange {
                    id: shard.shard_id().to_string(),
                    start,
                    end,
                });
            }
        }
        match page.next_token() {
            Some(token) if !token.is_empty() => next = Some(token.to_string()),
            _ => break,
        }
    }
    Ok(ShardMap::from_ranges(ranges))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn even(n: u128) -> ShardMap {
        let step = u128::MAX / n;
        ShardMap::from_ranges(
            (0..n)
                .map(|i| ShardRange {
                    id: format!("shardId-{i:012}"),
                    start: step * i,
                    end: if i + 1 == n {
                        u128::MAX
                    } else {
                        step * (i + 1) - 1
                    },
                })
                .collect(),
        )
    }

    #[test]
    fn hash_key_is_the_big_endian_md5_of_the_key() {
        // md5("") = d41d8cd98f00b204e9800998ecf8427e, md5("a") = 0cc175b9c0f1b6a831c399e269772661.
        assert_eq!(hash_key(""), 0xd41d8cd98f00b204e9800998ecf8427e);
        assert_eq!(hash_key("a"), 0x0cc175b9c0f1b6a831c399e269772661);
    }

    #[test]
    fn keys_map_to_the_shard_whose_range_holds_their_hash() {
        let map = even(4);
        assert!(map.is_known());
        assert_eq!(map.shard_of(0), 0);
        assert_eq!(map.shard_of(u128::MAX), 3);
        // "a" hashes to 0x0cc1...: the first quarter.
        assert_eq!(map.shard_of(hash_key("a")), 0);
        // "" hashes to 0xd41d...: the last quarter.
        assert_eq!(map.shard_of(hash_key("")), 3);
        let step = u128::MAX / 4;
        assert_eq!(map.shard_of(step - 1), 0);
        assert_eq!(map.shard_of(step), 1);
        assert_eq!(map.explicit_hash_key(1), Some(step.to_string()));
        assert_eq!(
            map.shard_of(map.explicit_hash_key(2).unwrap().parse().unwrap()),
            2
        );
    }

    #[test]
    fn an_incomplete_layout_is_treated_as_unknown() {
        let gap = ShardMap::from_ranges(vec![
            ShardRange {
                id: "a".into(),
                start: 0,
                end: 10,
            },
            ShardRange {
                id: "b".into(),
                start: 20,
                end: u128::MAX,
            },
        ]);
        assert!(!gap.is_known());
        assert_eq!(gap.shard_count(), 1);
        assert_eq!(gap.explicit_hash_key(0), None);
        assert!(!ShardMap::from_ranges(Vec::new()).is_known());
        // Unsorted input is fine.
        let map = ShardMap::from_ranges(vec![
            ShardRange {
                id: "b".into(),
                start: 11,
                end: u128::MAX,
            },
            ShardRange {
                id: "a".into(),
                start: 0,
                end: 10,
            },
        ]);
        assert!(map.is_known());
        assert_eq!(map.id(map.shard_of(5)), "a");
        assert_eq!(map.id(map.shard_of(11)), "b");
    }
}
