//! What becomes of a unit, and of a claim check, once the sink knows: an accepted
//! unit frees its keys and settles its table's barrier gate; a failed one goes back to
//! the front of its keys' queues; a throttled shard backs off; a stored S3 object
//! lets its claim check go.

use std::cmp::Reverse;
use std::time::Instant;

use super::super::shards::hash_key;
use super::{Entry, KeyQueue, Scheduler, Unit};

impl Scheduler {
    /// The S3 object of the claim check `seq` (of `partition_key`) is stored: it
    /// may go once it heads its key's queue.
    pub fn stored(&mut self, partition_key: &str, seq: u64) {
        let hash = hash_key(partition_key);
        let Some(queue) = self.keys.get_mut(hash) else {
            return;
        };
        let Some(entry) = queue.entries.iter_mut().find(|e| e.seq == seq) else {
            return;
        };
        entry.waiting = false;
        if queue.entries.front().is_some_and(|e| e.seq == seq) {
            self.make_ready(hash);
        }
    }

    /// Kinesis accepted this unit's records.
    pub fn accepted(&mut self, unit: Unit) {
        if let Some(s) = self.shards.get_mut(unit.shard) {
            s.pace.accepted();
        }
        for entry in unit.members {
            self.held_bytes -= entry.held_size();
            self.release_key(entry.hash, entry.key_slot as usize);
            self.settle_table(&entry);
        }
    }

    /// The unit was not accepted: its records go back to the front of their keys'
    /// queues, to go again no earlier than `not_before` (now when `None`).
    pub fn failed(&mut self, unit: Unit, not_before: Option<Instant>) {
        self.queued += unit.members.len();
        let mut touched = Vec::new();
        for mut entry in unit.members.into_iter().rev() {
            entry.attempts += 1;
            let hash = entry.hash;
            let shard = self.map.shard_of(hash);
            let (_, queue) = self.keys.get_or_insert(hash, || KeyQueue {
                shard,
                ..KeyQueue::default()
            });
            debug_assert!(
                queue.entries.front().is_none_or(|f| f.seq > entry.seq),
                "a failed record goes back ahead of later records of its key only"
            );
            queue.entries.push_front(entry);
            if queue.in_flight {
                queue.in_flight = false;
                touched.push(hash);
            }
        }
        for hash in touched {
            let Some(queue) = self.keys.get_mut(hash) else {
                continue;
            };
            match not_before {
                Some(due) => {
                    queue.delayed = true;
                    self.delayed.push(Reverse((due, hash)));
                }
                None => self.make_ready(hash),
            }
        }
    }

    /// Kinesis throttled records of `shard`: that shard backs off, the others do not.
    pub fn shard_throttled(&mut self, shard: usize, now: Instant) {
        if let Some(s) = self.shards.get_mut(shard) {
            s.pace.throttled(now);
        }
    }

    /// The key's unit was accepted. Called once per record of the unit, so only
    /// the first call for a key acts: a key is never in its shard's heap twice.
    /// `hint` is where the key was when its record was taken; it is still there (a
    /// key in flight is never removed) unless an earlier record of the same unit
    /// released it, so the index is read only to remove the key.
    fn release_key(&mut self, hash: u128, hint: usize) {
        let Some(slot) = self.keys.find(hint, hash) else {
            return;
        };
        let Some(queue) = self.keys.at_mut(slot, hash) else {
            return;
        };
        if !queue.in_flight {
            return;
        }
        queue.in_flight = false;
        if queue.entries.is_empty() {
            if !queue.delayed {
                self.keys.remove_at(slot, hash);
            }
        } else {
            self.make_ready_at(slot, hash);
        }
    }

    /// An accepted record's effect on its table's gate: keys parked there are
    /// looked at again when a barrier may now go, or has gone.
    fn settle_table(&mut self, entry: &Entry) {
        let scope = entry.record.table;
        let Some(table) = self.tables.get_mut(&scope) else {
            return;
        };
        table.outstanding -= 1;
        let mut opened = false;
        if entry.record.barrier {
            table.barriers.retain(|(seq, _)| *seq != entry.seq);
            opened = true;
        }
        for (seq, earlier) in table.barriers.iter_mut() {
            if *seq > entry.seq {
                *earlier -= 1;
                opened |= *earlier == 0;
            }
        }
        let parked = if opened {
            std::mem::take(&mut table.blocked)
        } else {
            Vec::new()
        };
        if table.outstanding == 0 && table.barriers.is_empty() {
            self.tables.remove(&scope);
        }
        for hash in parked {
            self.make_ready(hash);
        }
    }
}
