//! The keys the scheduler holds records of: each key's queue in a slot of a slab,
//! and an index from the key's hash to its slot.
//!
//! A ready key carries its slot, so taking its record reaches the queue directly. The
//! slots are taken in the order records arrive and reused as keys leave, so that
//! walk stays within recently touched memory. The index holds slots only (four bytes
//! per key, not the key's 16-byte hash beside it) and compares a candidate through its
//! slot: with tens of thousands of keys held, the index stays small enough for the
//! CPU's cache, and finding a key that was just taken for a request (to release it)
//! reads the slot that taking it touched, rather than a line of a table as large as
//! the records held. A slot is checked against the hash before use: a key that left
//! and a new key in its slot are not confused.
//!
//! A key that leaves frees its slot only: its index entry stays, stale, and is passed
//! over by that check (finding a stale entry to remove it cost a probe of the index
//! per key, a cache miss with many keys held). When the index is full it is built
//! again from the slots held, with room for as many again, so stale entries never
//! outnumber the live ones by more than that.

use hashbrown::HashTable;
use slab::Slab;

use super::KeyQueue;

#[derive(Debug, Default)]
pub(super) struct Keys {
    /// Slots of `slots`, found by [`index_hash`] of their key's hash. Four bytes a
    /// slot: the index's share of the cache halves, and a slot past `u32` would need
    /// billions of keys held, far past any memory budget.
    index: HashTable<u32>,
    slots: Slab<(u128, KeyQueue)>,
}

/// The index's bytes per key, at worst, of the most keys held since it was last
/// rebuilt: a slot number and a control byte per bucket, and the index, rebuilt when
/// full with room for twice the keys then held (a power of two of buckets, at most 7/8
/// of them used), may have 32/7 buckets per key it was rebuilt for. It keeps its size
/// until the next rebuild, however many keys leave. `schedule::ENTRY_OVERHEAD` counts
/// it with each record, so the index never outgrows what the budget counted at the
/// peak.
pub(super) const INDEX_BYTES_PER_KEY: usize = ((std::mem::size_of::<u32>() + 1) * 32).div_ceil(7);

/// What the index may take beyond [`INDEX_BYTES_PER_KEY`] per key: the few buckets
/// of room a rebuild adds, and the control bytes hashbrown reads past the end.
#[cfg(test)]
const INDEX_SLACK_BYTES: usize = 256;

/// The index's hash of a key's hash. Key hashes are MD5 (uniform) in use, but tests
/// use small numbers: folding both halves through a multiply spreads those too.
fn index_hash(hash: u128) -> u64 {
    ((hash as u64) ^ ((hash >> 64) as u64)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// `slot` as the index holds it. The slab's slots never outnumber the keys held at
/// once, and the memory budget's cap bounds those below `u32::MAX`
/// (`schedule::ENTRY_OVERHEAD` asserts it where it is defined).
fn index_slot(slot: usize) -> u32 {
    debug_assert!(u32::try_from(slot).is_ok(), "slot {slot} past u32");
    slot as u32
}

/// The hasher the index would grow with (it never does: it is rebuilt when full, and
/// made with room for every slot). A live entry's slot holds its key, so it rehashes
/// right; a stale one lands anywhere, which no lookup minds, as each checks the slot.
fn rehash(slots: &Slab<(u128, KeyQueue)>) -> impl Fn(&u32) -> u64 + '_ {
    |&s| slots.get(s as usize).map_or(0, |(h, _)| index_hash(*h))
}

impl Keys {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn slot(&self, hash: u128) -> Option<usize> {
        let slots = &self.slots;
        self.index
            .find(index_hash(hash), |&s| {
                slots.get(s as usize).is_some_and(|(h, _)| *h == hash)
            })
            .map(|&s| s as usize)
    }

    /// No key held: no slot, and no index entry finds one (tests check both).
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
            && self
                .index
                .iter()
                .all(|&s| self.slots.get(s as usize).is_none())
    }

    /// Index entries, live and stale (tests bound them).
    #[cfg(test)]
    pub fn index_len(&self) -> usize {
        self.index.len()
    }

    /// The key's slot, tried first at `hint` (where the key was seen last), then
    /// through the index.
    pub fn find(&self, hint: usize, hash: u128) -> Option<usize> {
        match self.at(hint, hash) {
            Some(_) => Some(hint),
            None => self.slot(hash),
        }
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
        let slot = match self.slot(hash) {
            Some(slot) => slot,
            None => {
                let slot = self.slots.insert((hash, new()));
                if self.index.len() == self.index.capacity() {
                    // Full (of live and stale entries): the slots held, the new one
                    // among them, into a fresh index.
                    self.rebuild();
                } else {
                    let slots = &self.slots;
                    self.index
                        .insert_unique(index_hash(hash), index_slot(slot), rehash(slots));
                }
                slot
            }
        };
        (slot, &mut self.slots[slot].1)
    }

    /// The index of the slots held, with room for as many again (and a few), so
    /// that rebuilding costs at most one insert per key that entered since.
    fn rebuild(&mut self) {
        let mut index = HashTable::with_capacity(2 * self.slots.len() + 16);
        for (slot, (hash, _)) in &self.slots {
            index.insert_unique(index_hash(*hash), index_slot(slot), rehash(&self.slots));
        }
        self.index = index;
    }

    /// Forget the key in `slot` (its queue must be `hash`'s): its slot is freed, its
    /// index entry left stale.
    pub fn remove_at(&mut self, slot: usize, hash: u128) {
        if self.at(slot, hash).is_some() {
            self.slots.remove(slot);
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
    use proptest::prelude::*;
    use std::collections::HashMap;

    proptest! {
        /// Any mix of keys entering and leaving finds what a map by hash finds:
        /// small hashes (which share most bits) and MD5-like ones, keys that come
        /// back into reused slots, stale slots that no longer match.
        #[test]
        fn finds_what_a_map_by_hash_finds(
            ops in proptest::collection::vec((any::<bool>(), 0u8..40, any::<bool>()), 0..400),
        ) {
            let hash_of = |k: u8, wide: bool| if wide {
                u128::from(k).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
            } else {
                u128::from(k)
            };
            let (mut keys, mut model) = (Keys::default(), HashMap::<u128, usize>::new());
            let (mut stale, mut peak) = (Vec::new(), 0);
            for (enter, k, wide) in ops {
                let hash = hash_of(k, wide);
                if enter {
                    let (slot, _) = keys.get_or_insert(hash, KeyQueue::default);
                    prop_assert_eq!(*model.entry(hash).or_insert(slot), slot);
                } else if let Some(slot) = model.remove(&hash) {
                    keys.remove_at(slot, hash);
                    stale.push((slot, hash));
                }
                prop_assert_eq!(keys.len(), model.len());
                // Stale entries are dropped when the index is rebuilt, with room
                // for twice the keys then held (rounded up to a power of two).
                peak = peak.max(model.len());
                prop_assert!(keys.index_len() < 4 * peak + 32, "{} entries, peak {peak}", keys.index_len());
                prop_assert!(keys.index.allocation_size() <= INDEX_BYTES_PER_KEY * peak + INDEX_SLACK_BYTES);
                for (&hash, &slot) in &model {
                    prop_assert_eq!(keys.slot(hash), Some(slot));
                    prop_assert!(keys.at(slot, hash).is_some());
                }
                for &(slot, hash) in &stale {
                    if !model.contains_key(&hash) {
                        prop_assert_eq!(keys.slot(hash), None);
                        prop_assert!(keys.at(slot, hash).is_none());
                    }
                }
            }
            for (hash, slot) in model {
                keys.remove_at(slot, hash);
            }
            prop_assert!(keys.is_empty());
        }
    }

    /// The memory budget counts [`INDEX_BYTES_PER_KEY`] with each record: the index
    /// never takes more than that per key of the most held so far, through waves of
    /// keys entering and most of them leaving.
    #[test]
    fn the_index_stays_within_what_the_budget_counts_for_it() {
        let mut keys = Keys::default();
        let mut held = std::collections::VecDeque::new();
        let (mut next, mut peak) = (0u128, 0usize);
        for wave in [1_000usize, 37, 20_000, 5, 70_000, 3_000] {
            // Keys come in until `wave` are held, then all but a tenth leave.
            while held.len() < wave {
                next += 1;
                let hash = next.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
                let (slot, _) = keys.get_or_insert(hash, KeyQueue::default);
                held.push_back((slot, hash));
                peak = peak.max(held.len());
                let bytes = keys.index.allocation_size();
                assert!(
                    bytes <= INDEX_BYTES_PER_KEY * peak + INDEX_SLACK_BYTES,
                    "{bytes} bytes of index for a peak of {peak} keys"
                );
            }
            while held.len() > wave / 10 {
                let (slot, hash) = held.pop_front().expect("held");
                keys.remove_at(slot, hash);
            }
        }
        assert!(peak >= 70_000);
    }

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
