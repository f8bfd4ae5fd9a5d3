//! The keys the scheduler holds records of: each key's queue in a slot of a slab,
//! and an index from the key's hash to its slot.
//!
//! A ready key carries its slot, so taking its record reaches the queue directly. The
//! slots are taken in the order records arrive and reused as keys leave, so that
//! walk stays within recently touched memory, where a lookup by hash lands anywhere
//! in a table as large as the records held. A slot is checked against the hash
//! before use: a key that left and a new key in its slot are not confused.

use rustc_hash::FxHashMap as HashMap;
use slab::Slab;

use super::KeyQueue;

#[derive(Debug, Default)]
pub(super) struct Keys {
    index: HashMap<u128, usize>,
    slots: Slab<(u128, KeyQueue)>,
}

impl Keys {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot(&self, hash: u128) -> Option<usize> {
        self.index.get(&hash).copied()
    }

    /// No key held: neither a slot nor an index entry (tests check both).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty() && self.index.is_empty()
    }

    pub fn get_mut(&mut self, hash: u128) -> Option<&mut KeyQueue> {
        let slot = self.slot(hash)?;
        self.at_mut(slot, hash)
    }

    /// The queue in `slot`, if it is still `hash`'s.
    pub fn at(&self, slot: usize, hash: u128) -> Option<&KeyQueue> {
        self.slots
            .get(slot)
            .filter(|(h, _)| *h == hash)
            .map(|(_, q)| q)
    }

    pub fn at_mut(&mut self, slot: usize, hash: u128) -> Option<&mut KeyQueue> {
        self.slots
            .get_mut(slot)
            .filter(|(h, _)| *h == hash)
            .map(|(_, q)| q)
    }

    /// The key's slot and queue, the queue made by `new` if the key holds none.
    pub fn get_or_insert(
        &mut self,
        hash: u128,
        new: impl FnOnce() -> KeyQueue,
    ) -> (usize, &mut KeyQueue) {
        let slot = match self.index.get(&hash) {
            Some(&slot) => slot,
            None => {
                let slot = self.slots.insert((hash, new()));
                self.index.insert(hash, slot);
                slot
            }
        };
        (slot, &mut self.slots[slot].1)
    }

    /// Forget the key in `slot` (its queue must be `hash`'s).
    pub fn remove_at(&mut self, slot: usize, hash: u128) {
        if self.at(slot, hash).is_some() {
            self.slots.remove(slot);
            self.index.remove(&hash);
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (usize, u128, &mut KeyQueue)> {
        self.slots
            .iter_mut()
            .map(|(slot, (hash, queue))| (slot, *hash, queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_slot_is_not_taken_for_the_key_that_left() {
        let mut keys = Keys::default();
        let (a, _) = keys.get_or_insert(1, KeyQueue::default);
        keys.remove_at(a, 1);
        let (b, _) = keys.get_or_insert(2, KeyQueue::default);
        assert_eq!(a, b, "the slab reuses the slot");
        assert!(keys.at(a, 1).is_none());
        assert!(keys.at(b, 2).is_some());
        assert_eq!((keys.slot(1), keys.slot(2), keys.len()), (None, Some(b), 1));
        // Removing by a stale (slot, hash) leaves the new key alone.
        keys.remove_at(a, 1);
        assert!(keys.get_mut(2).is_some());
    }
}
