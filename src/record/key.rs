//! The partition-key rules: which columns name a row, the key built from their
//! values, the hash for keys over the Kinesis limit, and the refusal of an update or
//! delete whose replica identity lacks them ([`UnkeyedChange`]).

use sha2::{Digest, Sha256};

use super::{RecordEncoder, TxnContext, UnkeyedChange, MAX_PARTITION_KEY_BYTES};
use crate::config::PartitionKey;
use crate::decode::{Change, Column, Kind};

impl RecordEncoder {
    /// Under `primary_key` the change names its key columns, so a missing one is
    /// certain. Under `{columns}` a column missing from the identity may be missing
    /// from the table (keyed by the table throughout, which is consistent): certain
    /// for an update whose new row has it, and for a delete of a table whose rows
    /// were seen with it. The start-up check covers the tables it cannot tell.
    pub(super) fn check_identity(
        &self,
        change: &Change,
        txn: &TxnContext,
        names: &[String],
    ) -> Result<(), UnkeyedChange> {
        let missing: Vec<String> = names
            .iter()
            .filter(|n| find(&change.identity, n).is_none())
            .cloned()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let certain = match self.partition_key {
            PartitionKey::PrimaryKey => true,
            _ => match change.kind {
                Kind::Update => names.iter().all(|n| find(&change.columns, n).is_some()),
                _ => self.tables_with_key.contains(&change.schema, &change.table),
            },
        };
        if !certain {
            return Ok(());
        }
        Err(UnkeyedChange {
            kind: change.kind.as_str(),
            table: table_key(change, 0),
            lsn: change.lsn.or(txn.commit_lsn).unwrap_or_default(),
            missing,
            identity: change.identity.iter().map(|c| c.name.to_string()).collect(),
        })
    }

    /// The partition key for `change` under this slot's [`PartitionKey`] rule (for
    /// an update, the key of its new row).
    pub fn partition_key(&self, change: &Change) -> String {
        let key = match &self.partition_key {
            PartitionKey::Fixed(fixed) => return fixed.clone(),
            PartitionKey::Table => table_key(change, 0),
            // Only the primary key names a row the same way in an INSERT (new row)
            // and a DELETE (identity); a table without one is keyed by the table.
            PartitionKey::PrimaryKey => keyed(change, &change.pk, KeySide::New),
            PartitionKey::Columns(columns) => keyed(change, columns, KeySide::New),
        };
        self.finish_key(key)
    }

    pub(super) fn finish_key(&self, key: String) -> String {
        if key.len() > MAX_PARTITION_KEY_BYTES {
            hex::encode(Sha256::digest(key.as_bytes()))
        } else {
            key
        }
    }
}

/// Which version of the row a key is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum KeySide {
    /// The new row (insert, update), else the identity (a delete; an update's
    /// unchanged TOASTed column, which wal2json leaves out of the new row).
    New,
    /// The identity: the row before an update.
    Old,
}

/// An update whose identity carries every key column (checked before) with a value
/// other than the new row's. Compared as wal2json's text: the key is that text.
pub(super) fn key_changed(change: &Change, names: &[String]) -> bool {
    names.iter().any(|name| {
        match (find(&change.columns, name), find(&change.identity, name)) {
            (Some(new), Some(old)) => new.value.get() != old.value.get(),
            // Not in the new row: an unchanged TOASTed value.
            _ => false,
        }
    })
}

/// `schema.table`, with room for `more` bytes after it.
pub(super) fn table_key(change: &Change, more: usize) -> String {
    let mut key = String::with_capacity(change.schema.len() + change.table.len() + 1 + more);
    key.push_str(&change.schema);
    key.push('.');
    key.push_str(&change.table);
    key
}

/// `schema.table` followed by `|value` for each named column, read from `side`. With
/// no names, or a name missing from the change, the table alone.
pub(super) fn keyed(change: &Change, names: &[impl AsRef<str>], side: KeySide) -> String {
    let mut key = table_key(change, 16 * names.len());
    let base_len = key.len();
    for name in names {
        let name = name.as_ref();
        let value = match side {
            KeySide::New => find(&change.columns, name).or_else(|| find(&change.identity, name)),
            KeySide::Old => find(&change.identity, name),
        };
        match value {
            Some(value) => {
                key.push('|');
                key.push_str(value.value.get());
            }
            None => {
                key.truncate(base_len);
                return key;
            }
        }
    }
    key
}

pub(super) fn find<'c>(columns: &'c [Column], name: &str) -> Option<&'c Column> {
    columns.iter().find(|c| c.name == name)
}
