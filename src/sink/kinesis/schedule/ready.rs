//! A shard's ready keys, oldest first: a FIFO for keys readied in order, a heap for
//! the rest.
//!
//! A key becomes ready with its head record's rank. Keys readied as records arrive
//! come in rising rank (sequence numbers only grow), so they queue in a `VecDeque`
//! at O(1). A key readied again later (its previous unit accepted or retried, a
//! barrier opened, a backfilled row after a live one) may rank below the queue's
//! tail; it goes into a binary heap. The oldest is the smaller of the two fronts, so
//! the order is exactly a single heap's, at a fraction of its cost per record.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

/// Items (the scheduler's: rank, key hash, slot), smallest first; the same
/// interface as the `BinaryHeap<Reverse<T>>` it replaces.
#[derive(Debug)]
pub(super) struct ReadyKeys<T> {
    /// Ascending.
    fifo: VecDeque<Reverse<T>>,
    heap: BinaryHeap<Reverse<T>>,
}

impl<T: Ord> Default for ReadyKeys<T> {
    fn default() -> Self {
        ReadyKeys {
            fifo: VecDeque::new(),
            heap: BinaryHeap::new(),
        }
    }
}

impl<T: Ord> ReadyKeys<T> {
    pub(super) fn new() -> Self {
        Self::default()
    }

    pub(super) fn push(&mut self, item: Reverse<T>) {
        match self.fifo.back() {
            Some(last) if last.0 > item.0 => self.heap.push(item),
            _ => self.fifo.push_back(item),
        }
    }

    /// The oldest entry.
    pub(super) fn peek(&self) -> Option<&Reverse<T>> {
        match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => Some(if f.0 <= h.0 { f } else { h }),
            (f, h) => f.or(h),
        }
    }

    /// Remove the oldest entry.
    pub(super) fn pop(&mut self) -> Option<Reverse<T>> {
        let from_fifo = match (self.fifo.front(), self.heap.peek()) {
            (Some(f), Some(h)) => f.0 <= h.0,
            (f, _) => f.is_some(),
        };
        if from_fifo {
            self.fifo.pop_front()
        } else {
            self.heap.pop()
        }
    }

    pub(super) fn len(&self) -> usize {
        self.fifo.len() + self.heap.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.fifo.is_empty() && self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Any mix of pushes and pops gives what one binary heap gives.
        #[test]
        fn pops_in_the_order_one_heap_would(
            ops in proptest::collection::vec(prop_oneof![
                (0u64..50, 0u128..4).prop_map(Some),
                Just(None),
            ], 0..200),
            rising in any::<bool>(),
        ) {
            let (mut ready, mut heap) = (ReadyKeys::new(), BinaryHeap::new());
            let mut base = 0;
            for op in ops {
                match op {
                    Some((rank, key)) => {
                        // Mostly rising ranks, as records arrive, or any order.
                        let rank = if rising { base += rank % 3; base + rank } else { rank };
                        ready.push(Reverse((rank, key)));
                        heap.push(Reverse((rank, key)));
                    }
                    None => {
                        prop_assert_eq!(ready.peek().copied(), heap.peek().copied());
                        prop_assert_eq!(ready.pop(), heap.pop());
                    }
                }
                prop_assert_eq!(ready.len(), heap.len());
                prop_assert_eq!(ready.is_empty(), heap.is_empty());
            }
            while let Some(top) = heap.pop() {
                prop_assert_eq!(ready.pop(), Some(top));
            }
            prop_assert!(ready.pop().is_none());
        }
    }
}
