//! The set of records handed to the sink and not yet accepted, as bitmaps of 256
//! sequence numbers each: records are registered in sequence order, so a record
//! costs a bit set in the last block and a bit cleared in a block found by binary
//! search, where a `BTreeSet` paid a tree insert and removal per record.
//!
//! Memory follows the records outstanding, not the span of sequence numbers behind
//! a stuck one: a block leaves as soon as it is empty at the front, and empty
//! blocks elsewhere are dropped once they are more than half of all blocks. So at
//! most two blocks (80 bytes) per outstanding record, and about one block per 256
//! records when they are accepted roughly in order; the queue's capacity follows
//! the most blocks held at once.

use std::collections::VecDeque;

const BITS: u64 = 256;
const WORDS: usize = (BITS / 64) as usize;

#[derive(Debug, Default)]
pub(super) struct Outstanding {
    /// Blocks by rising `base`, each holding at least one record unless counted in
    /// `empty`; the first block is never empty.
    blocks: VecDeque<Block>,
    /// Empty blocks left in place (not at the front).
    empty: usize,
    len: usize,
}

#[derive(Debug, Clone)]
struct Block {
    /// The block's first sequence number over 256.
    base: u64,
    bits: [u64; WORDS],
}

impl Block {
    fn is_empty(&self) -> bool {
        self.bits == [0; WORDS]
    }

    fn has(&self, offset: u64) -> bool {
        self.bits[(offset / 64) as usize] & (1 << (offset % 64)) != 0
    }

    /// The first record at `offset` or above, as an offset.
    fn first_from(&self, offset: u64) -> Option<u64> {
        let mut word = (offset / 64) as usize;
        let mut mask = u64::MAX << (offset % 64);
        while word < WORDS {
            let hits = self.bits[word] & mask;
            if hits != 0 {
                return Some(word as u64 * 64 + u64::from(hits.trailing_zeros()));
            }
            word += 1;
            mask = u64::MAX;
        }
        None
    }
}

impl Outstanding {
    /// Add `seq`, which is above every sequence number added before.
    pub(super) fn insert(&mut self, seq: u64) {
        let (base, offset) = (seq / BITS, seq % BITS);
        debug_assert!(
            self.blocks.back().is_none_or(|b| b.base <= base),
            "records are registered in order"
        );
        match self.blocks.back_mut() {
            Some(block) if block.base == base => {
                if block.has(offset) {
                    return;
                }
                if block.is_empty() {
                    self.empty -= 1;
                }
                block.bits[(offset / 64) as usize] |= 1 << (offset % 64);
            }
            _ => {
                let mut bits = [0; WORDS];
                bits[(offset / 64) as usize] = 1 << (offset % 64);
                self.blocks.push_back(Block { base, bits });
            }
        }
        self.len += 1;
    }

    /// Remove `seq`; whether it was there.
    pub(super) fn remove(&mut self, seq: u64) -> bool {
        let (base, offset) = (seq / BITS, seq % BITS);
        let at = self.blocks.partition_point(|b| b.base < base);
        let Some(block) = self.blocks.get_mut(at).filter(|b| b.base == base) else {
            return false;
        };
        if !block.has(offset) {
            return false;
        }
        block.bits[(offset / 64) as usize] &= !(1 << (offset % 64));
        self.len -= 1;
        if block.is_empty() {
            self.empty += 1;
            self.drop_empty();
        }
        true
    }

    fn drop_empty(&mut self) {
        while self.blocks.front().is_some_and(Block::is_empty) {
            self.blocks.pop_front();
            self.empty -= 1;
        }
        if self.empty * 2 > self.blocks.len() {
            // The last block stays even when empty: the next record is likely its.
            let last = self.blocks.len().saturating_sub(1);
            let mut i = 0;
            self.blocks.retain(|b| {
                i += 1;
                !b.is_empty() || i - 1 == last
            });
            self.empty = usize::from(self.blocks.back().is_some_and(Block::is_empty));
        }
    }

    /// The smallest sequence number held.
    pub(super) fn first(&self) -> Option<u64> {
        let block = self.blocks.front()?;
        Some(block.base * BITS + block.first_from(0)?)
    }

    /// Whether any sequence number in `from..to` is held.
    pub(super) fn any_in(&self, from: u64, to: u64) -> bool {
        self.first_from(from).is_some_and(|seq| seq < to)
    }

    /// The smallest sequence number held at or above `from`.
    pub(super) fn first_from(&self, from: u64) -> Option<u64> {
        let at = self.blocks.partition_point(|b| b.base < from / BITS);
        self.blocks.range(at..).find_map(|block| {
            let offset = if block.base == from / BITS {
                from % BITS
            } else {
                0
            };
            Some(block.base * BITS + block.first_from(offset)?)
        })
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[derive(Debug, Clone)]
    enum Op {
        /// Register the next record, after a gap of this many sequence numbers.
        Insert(u64),
        /// Remove the n-th held record (modulo), or a number never held.
        Remove(usize),
        RemoveAbsent(u64),
        /// Look for a held record in a range around the n-th one.
        Query(usize, u64, u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => prop_oneof![Just(0u64), 0..5u64, 200..700u64].prop_map(Op::Insert),
            3 => any::<usize>().prop_map(Op::Remove),
            1 => (0..2_000u64).prop_map(Op::RemoveAbsent),
            2 => (any::<usize>(), 0..300u64, 0..600u64).prop_map(|(i, a, b)| Op::Query(i, a, b)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// Every answer is a BTreeSet's, and empty blocks never pile up.
        #[test]
        fn behaves_as_a_set(ops in prop::collection::vec(op(), 1..400)) {
            let (mut set, mut model) = (Outstanding::default(), BTreeSet::new());
            let mut next = 0u64;
            for op in ops {
                match op {
                    Op::Insert(gap) => {
                        next += gap;
                        set.insert(next);
                        model.insert(next);
                        next += 1;
                    }
                    Op::Remove(i) => {
                        if let Some(&seq) = model.iter().nth(i % model.len().max(1)) {
                            prop_assert!(set.remove(seq));
                            model.remove(&seq);
                            prop_assert!(!set.remove(seq), "removed twice");
                        }
                    }
                    Op::RemoveAbsent(seq) => {
                        prop_assert_eq!(set.remove(seq), model.remove(&seq));
                    }
                    Op::Query(i, back, width) => {
                        let around = model.iter().nth(i % model.len().max(1)).copied().unwrap_or(next);
                        let from = around.saturating_sub(back);
                        let to = from + width;
                        prop_assert_eq!(set.any_in(from, to), model.range(from..to).next().is_some());
                        prop_assert_eq!(set.first_from(from), model.range(from..).next().copied());
                    }
                }
                prop_assert_eq!(set.len(), model.len());
                prop_assert_eq!(set.first(), model.first().copied());
                let full = set.blocks.iter().filter(|b| !b.is_empty()).count();
                prop_assert_eq!(set.blocks.len() - full, set.empty);
                prop_assert!(set.empty <= full + 1, "{} empty blocks beside {} full", set.empty, full);
                prop_assert!(set.blocks.front().is_none_or(|b| !b.is_empty()));
            }
        }
    }

    #[test]
    fn the_last_sequence_numbers_fit() {
        let mut set = Outstanding::default();
        for seq in [u64::MAX - 300, u64::MAX - 1, u64::MAX] {
            set.insert(seq);
        }
        assert_eq!(set.first_from(u64::MAX - 299), Some(u64::MAX - 1));
        assert!(set.any_in(u64::MAX - 1, u64::MAX));
        assert!(!set.any_in(u64::MAX - 299, u64::MAX - 1));
        assert!(set.remove(u64::MAX) && set.remove(u64::MAX - 300));
        assert_eq!((set.first(), set.len()), (Some(u64::MAX - 1), 1));
    }

    #[test]
    fn a_stuck_record_holds_one_block_not_the_span_behind_it() {
        let mut set = Outstanding::default();
        set.insert(0);
        for seq in 1..1_000_000 {
            set.insert(seq);
            assert!(set.remove(seq));
        }
        assert_eq!((set.len(), set.first()), (1, Some(0)));
        assert!(set.blocks.len() <= 3, "{} blocks", set.blocks.len());
    }
}
