//! Filling the next `PutRecords` request: per shard, the oldest ready keys within the
//! shard's pace and the request's limits, each taken as a single record or packed
//! with other ready keys into one KPL aggregate. One unit per key, never two.

use std::cmp::Reverse;
use std::time::Instant;

use super::super::aggregate::Aggregator;
use super::{rank, Aggregate, Entry, Limits, Scheduler, Unit};

impl Scheduler {
    /// The units of the next request: per shard, the oldest ready keys, within the
    /// shard's pace and the request's limits.
    pub fn next_request(&mut self, now: Instant, limits: Limits) -> Vec<Unit> {
        self.promote_delayed(now);
        let mut units = Vec::new();
        let mut bytes = 0usize;
        let n = self.shards.len();
        'shards: for i in 0..n {
            let shard = (self.next_shard + i) % n;
            while units.len() < limits.max_units {
                let room = limits.max_bytes.saturating_sub(bytes);
                let started = !units.is_empty();
                let unit = match limits.aggregate_bytes {
                    Some(largest) => self.take_aggregate(now, shard, room, largest, started),
                    None => self.take_single(now, shard, room, started),
                };
                match unit {
                    Take::Unit(unit) => {
                        let size = unit.wire_size();
                        self.shards[shard].pace.sent(now, 1, size as u64);
                        bytes += size;
                        if units.is_empty() {
                            // Sized once, at the first unit, for what is queued (at most
                            // a request's worth), not grown; a call that finds nothing
                            // ready allocates nothing.
                            units.reserve(self.queued.min(limits.max_units));
                        }
                        self.queued -= unit.members.len();
                        units.push(unit);
                    }
                    Take::ShardDone => break,
                    Take::RequestFull => break 'shards,
                }
            }
        }
        self.next_shard = (self.next_shard + 1) % n.max(1);
        if !units.is_empty() {
            self.linger_since = (self.queued > 0).then_some(now);
        }
        units
    }

    /// The shard's oldest ready key, dropping heap entries that no longer describe
    /// a ready key (a key readied twice, a remap): a slip can neither stall a shard
    /// nor put a second unit of a key in flight.
    fn ready_head(&mut self, shard: usize) -> Option<(usize, u128)> {
        while let Some(&Reverse((seq, hash, slot))) = self.shards[shard].ready.peek() {
            let valid = self.keys.at(slot, hash).is_some_and(|q| {
                !q.in_flight
                    && !q.delayed
                    && q.shard == shard
                    && q.entries.front().is_some_and(|e| {
                        !e.waiting
                            && rank(e) == seq
                            && self.tables.get(&e.record.table).is_none_or(|t| t.admits(e))
                    })
            });
            if valid {
                return Some((slot, hash));
            }
            self.shards[shard].ready.pop();
        }
        None
    }

    fn take_single(&mut self, now: Instant, shard: usize, room: usize, started: bool) -> Take {
        let Some((slot, hash)) = self.ready_head(shard) else {
            return Take::ShardDone;
        };
        let Some(queue) = self.keys.at_mut(slot, hash) else {
            return Take::ShardDone;
        };
        let size = queue.entries.front().map_or(0, |e| e.record.billed_size());
        if started && size > room {
            return Take::RequestFull;
        }
        if !self.shards[shard].pace.allows(now, 1, size as u64) {
            return Take::ShardDone;
        }
        self.shards[shard].ready.pop();
        let Some(mut entry) = queue.entries.pop_front() else {
            return Take::ShardDone;
        };
        entry.key_slot = slot_hint(slot);
        queue.in_flight = true;
        Take::Unit(Unit {
            shard,
            members: vec![entry],
            aggregate: None,
        })
    }

    /// Pack the shard's ready keys, oldest first, into one aggregate of at most
    /// `room` bytes. Without a known layout an aggregate holds one key only, so that
    /// it lands where that key's plain records land.
    fn take_aggregate(
        &mut self,
        now: Instant,
        shard: usize,
        request_room: usize,
        largest: usize,
        started: bool,
    ) -> Take {
        let Some((slot, first)) = self.ready_head(shard) else {
            return Take::ShardDone;
        };
        let head_size = self
            .keys
            .at(slot, first)
            .and_then(|q| q.entries.front())
            .map_or(0, |e| e.record.billed_size());
        if !self.shards[shard].pace.allows(now, 1, head_size as u64) {
            return Take::ShardDone;
        }
        if started && head_size > request_room {
            return Take::RequestFull;
        }
        let room = request_room
            .min(largest)
            .min(self.shards[shard].pace.bytes_left(now));
        let mut agg = match self.map.explicit_hash_key(shard) {
            Some(ehk) => Aggregator::with_explicit_hash_key(&ehk),
            None => Aggregator::new(),
        };
        let mut members: Vec<Entry> = Vec::new();
        let mixed_keys = self.map.is_known();
        'keys: while let Some((slot, hash)) = self.ready_head(shard) {
            if !members.is_empty() && !mixed_keys {
                break;
            }
            let Some(queue) = self.keys.at_mut(slot, hash) else {
                break;
            };
            let mut took = false;
            while let Some(entry) = queue.entries.front() {
                // A claim check whose object is not stored yet ends the key's run.
                if entry.waiting {
                    break;
                }
                // A record the table's gate holds (a barrier, or a record behind one)
                // ends the key's run in this aggregate.
                if took
                    && self
                        .tables
                        .get(&entry.record.table)
                        .is_some_and(|t| !t.admits(entry) || entry.record.barrier)
                {
                    break;
                }
                let key = &entry.record.partition_key;
                // The outer record carries the first user record's key too.
                let outer_key = members
                    .first()
                    .map_or(key.len(), |m| m.record.partition_key.len());
                if agg.size_with(key, entry.record.data.len()) + outer_key > room {
                    break;
                }
                agg.push(key, &entry.record.data);
                if let Some(mut entry) = queue.entries.pop_front() {
                    entry.key_slot = slot_hint(slot);
                    members.push(entry);
                }
                took = true;
            }
            if !took {
                break 'keys;
            }
            self.shards[shard].ready.pop();
            queue.in_flight = true;
            if !queue.entries.is_empty() {
                // The aggregate is full.
                break;
            }
        }
        match members.len() {
            // The oldest record alone is larger than an aggregate may be (it is
            // within the stream's record limit): it goes plain.
            0 => self.take_single(now, shard, request_room, started),
            1 => Take::Unit(Unit {
                shard,
                members,
                aggregate: None,
            }),
            _ => {
                let partition_key = members[0].record.partition_key.clone();
                Take::Unit(Unit {
                    shard,
                    aggregate: Some(Aggregate {
                        data: agg.finish(),
                        partition_key,
                        explicit_hash_key: self.map.explicit_hash_key(shard),
                    }),
                    members,
                })
            }
        }
    }
}

/// `slot` as an entry's [`Entry::key_slot`] hint (a slot past `u32` is never met: the
/// hint would then only miss, and the key be looked up by its hash).
fn slot_hint(slot: usize) -> u32 {
    u32::try_from(slot).unwrap_or(u32::MAX)
}

enum Take {
    Unit(Unit),
    /// Nothing more from this shard now (no ready key, or paced).
    ShardDone,
    /// The request has no room for the next unit.
    RequestFull,
}
