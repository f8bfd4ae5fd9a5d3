//! The keys of a record's `data` object (`"name":`) written once per set of columns:
//! a decoded row's [`Change::columns_tag`] names one exact list of column names, so
//! every later row with that tag copies them instead of checking each name for
//! bytes JSON escapes.

use rustc_hash::FxHashMap;

use super::push_json_str;
use crate::decode::{Change, Column};

/// Beyond this many tags the keys are written again from the start. A tag's names
/// are at most 8 KiB of text (format 1's cached lists; format 2 caches 64 headers
/// of at most 128 bytes), written with their quotes and colons and with a word per
/// column for where each ends: under about 6 MiB for all tags at worst.
const MAX_TAGS: usize = 256;

/// The keys written for each tag seen.
#[derive(Debug, Clone, Default)]
pub(in crate::record) struct Keys(FxHashMap<u64, Written>);

/// `"a":"b":…` for one tag, and where each key ends.
#[derive(Debug, Clone)]
pub(in crate::record) struct Written {
    text: Vec<u8>,
    ends: Vec<usize>,
}

impl Keys {
    /// Write the keys of `change`'s columns if its tag has none yet. A change with
    /// tag 0 (not from the decoder's header cache, or columns changed since) has none.
    pub(in crate::record) fn learn(&mut self, change: &Change) {
        let tag = change.columns_tag;
        if tag == 0 || self.0.contains_key(&tag) {
            return;
        }
        if self.0.len() >= MAX_TAGS {
            self.0.clear();
        }
        let mut written = Written {
            text: Vec::new(),
            ends: Vec::with_capacity(change.columns.len()),
        };
        for column in &change.columns {
            push_json_str(&mut written.text, &column.name);
            written.text.push(b':');
            written.ends.push(written.text.len());
        }
        self.0.insert(tag, written);
    }

    /// The keys of `change`'s columns, when its tag has them.
    pub(in crate::record) fn of(&self, change: &Change) -> Option<&Written> {
        if change.columns_tag == 0 {
            return None;
        }
        let written = self.0.get(&change.columns_tag)?;
        // A tag stands for one list of names; the count is checked in release builds
        // too, so that a change whose columns were edited without retiring its tag
        // cannot put a key on the wrong value.
        (written.ends.len() == change.columns.len()).then_some(written)
    }
}

impl Written {
    /// `"name":` of the `i`-th column.
    fn key(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// Whether these are the keys of `columns`, name by name (debug builds check
    /// each use).
    fn fits(&self, columns: &[Column]) -> bool {
        self.ends.len() == columns.len()
            && columns.iter().enumerate().all(|(i, c)| {
                let mut key = Vec::new();
                push_json_str(&mut key, &c.name);
                key.push(b':');
                key == self.key(i)
            })
    }
}

/// [`super::push_columns`] with the keys already written.
pub(super) fn push_columns_with(
    out: &mut Vec<u8>,
    columns: &[Column],
    keys: &Written,
    values: crate::record::types::ValueOptions,
) {
    debug_assert!(keys.fits(columns), "a columns tag names one list of names");
    out.push(b'{');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(keys.key(i));
        crate::record::types::push_value(out, column, values);
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Json, Kind};
    use crate::record::native::push_columns;
    use crate::record::types::ValueOptions;

    fn change(tag: u64, names: &[&str]) -> Change {
        let columns = names
            .iter()
            .enumerate()
            .map(|(i, n)| Column::new(*n, Json::parse(&i.to_string()).unwrap()))
            .collect();
        let mut change = Change::of_table(Kind::Insert, "t", columns, vec![]);
        change.columns_tag = tag;
        change
    }

    fn both(keys: &Keys, change: &Change) -> (Vec<u8>, Option<Vec<u8>>) {
        let values = ValueOptions::default();
        let mut plain = Vec::new();
        push_columns(&mut plain, &change.columns, values);
        let fast = keys.of(change).map(|written| {
            let mut out = Vec::new();
            push_columns_with(&mut out, &change.columns, written, values);
            out
        });
        (plain, fast)
    }

    #[test]
    fn a_tag_writes_the_same_object_as_the_names_do() {
        let mut keys = Keys::default();
        // Names JSON escapes, an empty one, a long one.
        let row = change(7, &["id", "a\"b", "", "tab\there", &"x".repeat(40)]);
        assert!(keys.of(&row).is_none(), "nothing learnt yet");
        keys.learn(&row);
        let (plain, fast) = both(&keys, &row);
        assert_eq!(fast.as_deref(), Some(&plain[..]));
        assert_eq!(
            String::from_utf8(plain).unwrap(),
            r#"{"id":0,"a\"b":1,"":2,"tab\there":3,"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx":4}"#
        );
    }

    #[test]
    fn untagged_or_edited_changes_take_the_names() {
        let mut keys = Keys::default();
        let untagged = change(0, &["id"]);
        keys.learn(&untagged);
        assert!(keys.of(&untagged).is_none(), "tag 0 is never learnt");
        keys.learn(&change(9, &["id", "name"]));
        // The same tag on fewer columns (edited without retiring the tag): not used.
        assert!(keys.of(&change(9, &["id"])).is_none());
        assert!(keys.of(&change(9, &["id", "name"])).is_some());
        // Another tag: its own keys.
        assert!(keys.of(&change(10, &["id", "name"])).is_none());
    }

    #[test]
    fn the_keys_are_bounded() {
        let mut keys = Keys::default();
        for tag in 1..=(MAX_TAGS as u64 + 5) {
            keys.learn(&change(tag, &["id"]));
        }
        assert!(keys.0.len() <= MAX_TAGS);
        assert!(keys.of(&change(MAX_TAGS as u64 + 5, &["id"])).is_some());
    }
}
