//! Which buffered records go into the next `PutRecords` request, and in what units.
//!
//! Owns the per-key ordering rule. `PutRecords` does not stop at a failed entry, so
//! two records of one partition key in one request (or in two concurrent requests)
//! could reach the stream in the wrong order when the first fails. Hence: **at most
//! one unit per partition key in flight**, where a unit is one Kinesis record — a
//! user record, or a KPL aggregate that succeeds or fails whole and so may carry
//! many records of a key in order. A failed unit's records go back to the front of
//! their keys' queues, ahead of everything later of those keys.
//!
//! The data structure makes the rule cheap: one queue per key, and per shard a heap
//! of the keys whose next record may go, oldest first. Taking a record is O(log
//! keys) whatever one key has buffered, so a hot key never hides cold keys behind
//! it. A TRUNCATE is a barrier for its table (see [`Record::barrier`]). This module
//! never drops a record and never talks to Kinesis.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use rustc_hash::FxHashMap as HashMap;
use std::time::Instant;

use super::pace::{ShardLimits, ShardPace};
use super::shards::{hash_key, ShardMap};
use crate::record::Record;
use entries::KeyEntries;
use keys::Keys;
use ready::ReadyKeys;
pub use unit::{Aggregate, Unit};

/// A key's buffered records, the first held inline.
mod entries;
/// Filling the next request with units.
mod fill;
/// The keys held: queues in slots, an index by hash.
mod keys;
/// What an accepted, failed or throttled unit does to the queues.
mod outcome;
/// A shard's ready keys: a FIFO for keys readied in order, a heap for the rest.
mod ready;
/// One Kinesis record of a request and what it carries.
mod unit;

/// Bookkeeping per record held, counted with its bytes against the memory budget:
/// its key's slot (which holds the key's first entry inline, and is at least the
/// size of an entry queued behind it), the key's share of the index at worst
/// ([`keys::INDEX_BYTES_PER_KEY`]: the index is sized for the most keys held since
/// its last rebuild, which this count bounded then) and ready-queue item when it is a
/// key's only record (the common case with primary keys), and the allocator's headers.
pub const ENTRY_OVERHEAD: usize = std::mem::size_of::<(u128, KeyQueue)>()
    + keys::INDEX_BYTES_PER_KEY
    + std::mem::size_of::<Reverse<Ready>>()
    + 64;

// The key index holds slots as u32: the keys the largest budget can hold fit.
const _: () =
    assert!(crate::config::MAX_MEMORY_BUDGET_BYTES / ENTRY_OVERHEAD as u64 <= u32::MAX as u64);

/// A record waiting for Kinesis, with its delivery sequence number.
#[derive(Debug)]
pub struct Entry {
    /// Position in the slot's delivery order (see `crate::ack`).
    pub seq: u64,
    pub record: Record,
    /// The partition key's MD5 hash key: the key's identity here, and its shard.
    hash: u128,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Its key's slot in [`Keys`], set when the record is taken for a request: the
    /// answer releases the key there without looking its hash up again (a hint,
    /// checked against the hash).
    key_slot: u32,
    /// When the record entered the sink.
    enqueued: Instant,
    /// A claim check whose S3 object is not stored yet: its key waits (see
    /// [`Scheduler::stored`]), later keys' records do not.
    pub waiting: bool,
}

/// A ready key's place in its shard's heap: its head's sequence number, with
/// backfilled rows after every live change (the top bit), so a backfill never
/// delays the slot's changes of other keys. A key's own records keep their order.
fn rank(head: &Entry) -> u64 {
    head.seq | (u64::from(head.record.background) << 63)
}

impl Entry {
    #[cfg(test)]
    pub fn new(seq: u64, record: Record) -> Self {
        Entry::arrived(seq, record, Instant::now())
    }

    /// A record that entered the sink at `now` (one clock read per chunk of records).
    pub fn arrived(seq: u64, record: Record, now: Instant) -> Self {
        Entry {
            seq,
            hash: hash_key(&record.partition_key),
            record,
            attempts: 0,
            key_slot: u32::MAX,
            enqueued: now,
            waiting: false,
        }
    }

    fn held_size(&self) -> usize {
        self.record.billed_size() + ENTRY_OVERHEAD
    }
}

/// Request limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_units: usize,
    pub max_bytes: usize,
    /// `Some(largest aggregate)` to pack records with KPL aggregation.
    pub aggregate_bytes: Option<usize>,
}

#[derive(Debug, Default)]
struct KeyQueue {
    entries: KeyEntries,
    in_flight: bool,
    /// Waiting out a retry backoff (in `Scheduler::delayed`).
    delayed: bool,
    shard: usize,
}

/// A ready key in its shard's queue: its head's rank, its hash and its slot.
type Ready = (u64, u128, usize);

#[derive(Debug)]
struct ShardQueue {
    /// Keys whose next record may go, oldest first.
    ready: ReadyKeys<Ready>,
    pace: ShardPace,
}

/// A table's gate for its TRUNCATE barriers. Every record stays in its key's queue
/// (so per-key order is absolute, even when one `fixed` key spans tables); the gate
/// only decides whether a key's head record may go: a barrier once every earlier
/// record of its table is accepted, any other record once no earlier barrier of its
/// table is pending.
#[derive(Debug, Default)]
struct TableState {
    /// Records of the table not yet accepted, barriers included.
    outstanding: usize,
    /// Barriers not yet accepted, oldest first: (sequence number, earlier records of
    /// the table not yet accepted).
    barriers: VecDeque<(u64, usize)>,
    /// Keys whose head record waits at this gate.
    blocked: Vec<u128>,
}

impl TableState {
    fn admits(&self, entry: &Entry) -> bool {
        if entry.record.barrier {
            self.barriers
                .iter()
                .find(|(seq, _)| *seq == entry.seq)
                .is_none_or(|(_, earlier)| *earlier == 0)
        } else {
            self.barriers
                .front()
                .is_none_or(|(seq, _)| *seq > entry.seq)
        }
    }
}

#[derive(Debug)]
pub struct Scheduler {
    map: ShardMap,
    limits: ShardLimits,
    keys: Keys,
    shards: Vec<ShardQueue>,
    /// Keys in retry backoff: (due, key).
    delayed: BinaryHeap<Reverse<(Instant, u128)>>,
    tables: HashMap<u64, TableState>,
    /// Records held and not in flight.
    queued: usize,
    /// Bytes of every record held until accepted, in flight or not (with overhead).
    held_bytes: usize,
    /// When the first record queued since the last request arrived (linger).
    linger_since: Option<Instant>,
    /// Shard the next request starts filling from (round robin).
    next_shard: usize,
}

impl Scheduler {
    pub fn new(map: ShardMap, limits: ShardLimits) -> Self {
        let mut s = Scheduler {
            map: ShardMap::unknown(),
            limits,
            keys: Keys::default(),
            shards: Vec::new(),
            delayed: BinaryHeap::new(),
            tables: HashMap::default(),
            queued: 0,
            held_bytes: 0,
            linger_since: None,
            next_shard: 0,
        };
        s.remap(map);
        s
    }

    pub fn map(&self) -> &ShardMap {
        &self.map
    }

    /// Use a new shard layout (a reshard, a scaled on-demand stream). Keys move to
    /// their new shards; pacing starts afresh.
    pub fn remap(&mut self, map: ShardMap) {
        let limits = if map.is_known() {
            self.limits
        } else {
            ShardLimits::NONE
        };
        self.shards = (0..map.shard_count())
            .map(|_| ShardQueue {
                ready: ReadyKeys::new(),
                pace: ShardPace::new(limits),
            })
            .collect();
        self.map = map;
        self.next_shard = 0;
        for table in self.tables.values_mut() {
            table.blocked.clear();
        }
        let mut held = Vec::with_capacity(self.keys.len());
        for (slot, hash, queue) in self.keys.iter_mut() {
            queue.shard = self.map.shard_of(hash);
            held.push((slot, hash));
        }
        for (slot, hash) in held {
            self.make_ready_at(slot, hash);
        }
    }

    /// A record enters the sink, in delivery order.
    pub fn push(&mut self, entry: Entry) {
        self.held_bytes += entry.held_size();
        self.queued += 1;
        self.linger_since.get_or_insert(entry.enqueued);
        let table = self.tables.entry(entry.record.table).or_default();
        if entry.record.barrier {
            table.barriers.push_back((entry.seq, table.outstanding));
        }
        table.outstanding += 1;
        self.enqueue(entry);
    }

    fn enqueue(&mut self, entry: Entry) {
        let hash = entry.hash;
        let shard = self.map.shard_of(hash);
        let (slot, queue) = self.keys.get_or_insert(hash, || KeyQueue {
            shard,
            ..KeyQueue::default()
        });
        debug_assert!(
            queue.entries.back().is_none_or(|b| b.seq < entry.seq),
            "records of a key enter in order"
        );
        queue.entries.push_back(entry);
        if queue.entries.len() == 1 {
            self.make_ready_at(slot, hash);
        }
    }

    /// [`Self::make_ready_at`] for a key known by its hash only.
    fn make_ready(&mut self, hash: u128) {
        if let Some(slot) = self.keys.slot(hash) {
            self.make_ready_at(slot, hash);
        }
    }

    /// Put an idle key whose head may go into its shard's heap, or park it at its
    /// table's gate.
    fn make_ready_at(&mut self, slot: usize, hash: u128) {
        let Some(queue) = self.keys.at(slot, hash) else {
            return;
        };
        if queue.in_flight || queue.delayed {
            return;
        }
        let Some(head) = queue.entries.front() else {
            return;
        };
        if head.waiting {
            return;
        }
        match self.tables.get_mut(&head.record.table) {
            Some(table) if !table.admits(head) => table.blocked.push(hash),
            _ => self.shards[queue.shard]
                .ready
                .push(Reverse((rank(head), hash, slot))),
        }
    }

    /// Records held and not in flight.
    pub fn len(&self) -> usize {
        self.queued
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Keys whose next record may go now or once their shard opens: the records
    /// the next requests can carry without aggregation.
    pub fn ready_keys(&self) -> usize {
        self.shards.iter().map(|s| s.ready.len()).sum()
    }

    /// Bytes of every record held until accepted (with bookkeeping overhead).
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// When the oldest record queued since the last request arrived.
    pub fn linger_since(&self) -> Option<Instant> {
        self.linger_since
    }

    /// Move keys whose backoff ended back to their shards' ready heaps.
    fn promote_delayed(&mut self, now: Instant) {
        while let Some(&Reverse((due, hash))) = self.delayed.peek() {
            if due > now {
                break;
            }
            self.delayed.pop();
            if let Some(queue) = self.keys.get_mut(hash) {
                queue.delayed = false;
                self.make_ready(hash);
            }
        }
    }

    /// When something not sendable now becomes sendable: a key's backoff ends, or a
    /// shard with ready keys opens again. `None` when only acknowledgements can help.
    pub fn next_wake(&self, now: Instant) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((due, _))| *due);
        let paced = self
            .shards
            .iter()
            .filter(|s| !s.ready.is_empty())
            .map(|s| s.pace.next_opening(now))
            .filter(|t| *t > now)
            .min();
        [delayed, paced].into_iter().flatten().min()
    }
}

#[cfg(test)]
mod tests;
