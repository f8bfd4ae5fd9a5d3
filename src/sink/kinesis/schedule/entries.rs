//! One partition key's buffered records, oldest first. Most keys hold one record at
//! a time (a row's key with primary keys), so the first is held inline and only a
//! key with two or more records allocates a queue.

use std::collections::VecDeque;

use super::Entry;

#[derive(Debug, Default)]
pub(super) struct KeyEntries {
    /// The oldest record; `None` only when the key holds none.
    head: Option<Entry>,
    /// The records after it.
    rest: VecDeque<Entry>,
}

impl KeyEntries {
    pub fn front(&self) -> Option<&Entry> {
        self.head.as_ref()
    }

    pub fn back(&self) -> Option<&Entry> {
        self.rest.back().or(self.head.as_ref())
    }

    pub fn is_empty(&self) -> bool {
        self.head.is_none()
    }

    pub fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.len()
    }

    pub fn push_back(&mut self, entry: Entry) {
        match self.head {
            None => self.head = Some(entry),
            Some(_) => self.rest.push_back(entry),
        }
    }

    pub fn push_front(&mut self, entry: Entry) {
        if let Some(old) = self.head.replace(entry) {
            self.rest.push_front(old);
        }
    }

    pub fn pop_front(&mut self) -> Option<Entry> {
        let head = self.head.take();
        self.head = self.rest.pop_front();
        head
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Entry> {
        self.head.iter_mut().chain(self.rest.iter_mut())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::record::Record;

    fn entry(seq: u64) -> Entry {
        Entry::new(seq, Record::new("k", b"{}".to_vec()))
    }

    proptest! {
        /// Any sequence of operations leaves it as a `VecDeque` would be.
        #[test]
        fn behaves_as_a_vec_deque(ops in proptest::collection::vec(0u8..4, 0..64)) {
            let (mut ours, mut model) = (KeyEntries::default(), VecDeque::new());
            for (seq, op) in ops.into_iter().enumerate() {
                let seq = seq as u64;
                match op {
                    0 => { ours.push_back(entry(seq)); model.push_back(seq); }
                    1 => { ours.push_front(entry(seq)); model.push_front(seq); }
                    _ => prop_assert_eq!(ours.pop_front().map(|e| e.seq), model.pop_front()),
                }
                prop_assert_eq!(ours.len(), model.len());
                prop_assert_eq!(ours.is_empty(), model.is_empty());
                prop_assert_eq!(ours.front().map(|e| e.seq), model.front().copied());
                prop_assert_eq!(ours.back().map(|e| e.seq), model.back().copied());
                let seqs: Vec<u64> = ours.iter_mut().map(|e| e.seq).collect();
                prop_assert_eq!(seqs, model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
