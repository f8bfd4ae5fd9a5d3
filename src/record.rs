//! A row change → one Kinesis record: the JSON payload and the partition key.
//!
//! Owns the record format documented in the README and the partition-key rules.
//! It never changes a value on its own: column values are copied as the exact JSON
//! text wal2json printed, so a `numeric(40,10)` keeps every digit, unless the slot's
//! value options ask for another form ([`types`], which never loses a digit either).

use std::collections::{HashMap, HashSet};

use crate::config::{FormatConfig, PartitionKey, RecordFormat, Timestamps};
use crate::decode::{table_hash, Change, Kind};
use crate::lsn::Lsn;

use key::{find, key_changed, keyed, KeySide};
use native::Extra;
// The Debezium envelope writes its columns and strings the native way.
use native::push_columns;
pub(crate) use native::push_json_str;

/// The Debezium connector's envelope (`record_format: debezium`, `tail --format debezium`).
pub mod debezium;
/// Records over the stream's limit: the error, or a claim check with its S3 object.
pub mod oversize;
/// Leaf partitions reported under their root table.
pub mod root;
/// The catalog's view of the slot's tables, cached per slot.
pub mod shape;
/// The `tables:` rules: skip, stream, per-table key, excluded and masked columns.
pub mod tables;
/// Unchanged TOAST columns named or given a placeholder.
pub mod toast;
/// Consumer-friendly values (`numeric_as_string`, `json_as_object`, `timestamps`).
pub mod types;

/// The partition-key rules and the refusal of unkeyable changes.
mod key;
/// The native JSON payload writer.
mod native;

/// Kinesis documents partition keys of at most 256 Unicode characters, but it
/// measures the key's encoded length: a key of 129 two-byte characters is refused.
/// So a key of more than 256 UTF-8 bytes is replaced by the hex SHA-256 of the full
/// key (64 characters), before the key is hashed to a shard.
pub const MAX_PARTITION_KEY_BYTES: usize = 256;

/// One record ready for `PutRecords`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition_key: String,
    pub data: Vec<u8>,
    /// A hash of `schema.table`: the scope of a truncate barrier.
    pub table: u64,
    /// A TRUNCATE: the sink delivers it only after every earlier record of its table
    /// was accepted, and holds every later record of the table until it is.
    pub barrier: bool,
    /// A backfilled row: the sink sends other keys' live changes first.
    pub background: bool,
    /// A claim check's full record: the sink puts it into S3 before `data` may go.
    pub offload: Option<Box<oversize::Offload>>,
    /// Which of the slot's streams it goes to ([`crate::config::SlotConfig::streams`]).
    pub stream: u16,
}

impl Record {
    /// A record outside any table scope (tests, tools).
    pub fn new(partition_key: impl Into<String>, data: Vec<u8>) -> Self {
        Record {
            partition_key: partition_key.into(),
            data,
            table: 0,
            barrier: false,
            background: false,
            offload: None,
            stream: 0,
        }
    }

    /// A record of `change`'s table; `kind` is what the record says (a key change's
    /// halves are a delete and an insert). The one way the encoder builds records.
    fn of_change(partition_key: String, data: Vec<u8>, change: &Change, kind: Kind) -> Self {
        Record {
            partition_key,
            data,
            table: table_hash(&change.schema, &change.table),
            barrier: kind == Kind::Truncate,
            background: kind == Kind::Read,
            offload: None,
            stream: 0,
        }
    }

    /// The size Kinesis counts against its record and request limits: the data
    /// blob plus the partition key.
    pub fn billed_size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }

    /// The memory the record holds: its billed size plus a claim check's full record.
    pub fn held_bytes(&self) -> usize {
        self.billed_size() + self.offload.as_ref().map_or(0, |o| o.body.len())
    }
}

/// The transaction a change belongs to, as far as the decoder knows it.
#[derive(Debug, Clone, Default)]
pub struct TxnContext {
    pub xid: Option<u64>,
    pub timestamp: Option<String>,
    /// The LSN that identifies the transaction (the same on every redelivery).
    pub commit_lsn: Option<Lsn>,
}

/// An update or delete whose replica identity lacks the columns that name its row.
/// Keyed by the table instead, it would be unordered with the row's earlier changes
/// (keyed by their values), so it is not sent at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{kind} of {table} at LSN {lsn} cannot be given its row's partition key: the key column(s) {missing:?} \
     are not in the replica identity the server sent ({identity:?}); keyed by the table it could overtake the row's \
     earlier changes, so the slot stops. Make the identity carry the key (ALTER TABLE {table} REPLICA IDENTITY FULL, \
     or DEFAULT with the key as the primary key); that covers later changes only, so to get past this one set \
     partition_key: table (or a fixed key) for this slot"
)]
pub struct UnkeyedChange {
    pub kind: &'static str,
    pub table: String,
    pub lsn: Lsn,
    pub missing: Vec<String>,
    pub identity: Vec<String>,
}

/// Builds records for one slot, in stream order.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    database: String,
    partition_key: PartitionKey,
    /// Under `{columns}`: tables (`schema.table`) whose rows were seen with every key
    /// column, so a delete of theirs without one in its identity is certainly unkeyable
    /// (not a table that lacks the column). One entry per table.
    tables_with_key: TablesSeen,
    /// The slot (Debezium's `source.name`).
    slot: String,
    format: RecordFormat,
    values: types::ValueOptions,
    /// What to do with unchanged TOAST and partitions, and the shapes to do it with.
    shape_rules: shape::ShapeRules,
    shapes: shape::ShapeCache,
    /// Columns the current table's `tables:` entry excludes: never named, not even
    /// as unchanged TOAST (set by [`tables::TableRouter`] around each call).
    hidden: Vec<String>,
    /// `data`'s keys for the decoder's sets of columns.
    names: native::names::Keys,
    /// The last table's and transaction's fields as written.
    source: native::source::SourceFields,
}

impl RecordEncoder {
    pub fn new(database: impl Into<String>, partition_key: PartitionKey) -> Self {
        RecordEncoder {
            database: database.into(),
            partition_key,
            tables_with_key: TablesSeen::default(),
            slot: String::new(),
            format: RecordFormat::Native,
            values: types::ValueOptions::default(),
            shape_rules: shape::ShapeRules::default(),
            shapes: shape::ShapeCache::default(),
            hidden: Vec::new(),
            names: native::names::Keys::default(),
            source: native::source::SourceFields::default(),
        }
    }

    /// Apply `rules` (unchanged TOAST, partition roots) to the records from now on.
    pub fn with_shape_rules(mut self, rules: shape::ShapeRules) -> Self {
        self.shape_rules = rules;
        self
    }

    pub fn shape_rules(&self) -> &shape::ShapeRules {
        &self.shape_rules
    }

    /// The table shapes the encoder reads; the session fills them before a change
    /// that needs one reaches the encoder (`pipeline::catalog`).
    pub fn shapes_mut(&mut self) -> &mut shape::ShapeCache {
        &mut self.shapes
    }

    /// Rename a leaf partition's `change` to its root table when the rules say so;
    /// the leaf's (`schema`, `table`) when it did.
    pub fn report_under_root(&self, change: &mut Change) -> Option<(String, String)> {
        root::report_under_root(&self.shapes, &self.shape_rules.root, change)
    }

    /// The TOASTed columns `change` (an update) left out of its new row, as far as
    /// the catalog knows; empty under `unchanged_toast: omit`. Another envelope (a
    /// Debezium placeholder) reads them here.
    pub fn unchanged_toast_columns(&self, change: &Change) -> Vec<&str> {
        if change.kind != Kind::Update
            || self.shape_rules.unchanged_toast == crate::config::UnchangedToast::Omit
        {
            return Vec::new();
        }
        match self.shapes.get(&change.schema, &change.table) {
            Some(shape) => {
                let mut left = toast::left_out(shape, change);
                left.retain(|c| !self.hidden.iter().any(|h| h == c));
                left
            }
            None => Vec::new(),
        }
    }

    /// Records in `format`'s envelope and value forms, for the slot named `slot`.
    pub fn with_format(mut self, slot: impl Into<String>, format: &FormatConfig) -> Self {
        self.slot = slot.into();
        self.format = format.record_format;
        self.values = types::ValueOptions {
            numeric_as_string: format.numeric_as_string,
            json_as_object: format.json_as_object,
            iso8601: format.timestamps == Timestamps::Iso8601,
        };
        self
    }

    /// Encode `change`, the `seq`-th record (from 0) of the transaction `txn`, onto
    /// `out`; returns how many records it pushed (their seqs are `seq`, `seq + 1`).
    ///
    /// Usually one. An update that changes the columns its partition key is made of
    /// becomes two, marked `"key_change": true`: a delete under the old key, then an
    /// insert under the new one. Sent as one update under the new key, it could
    /// overtake the row's earlier changes still under the old key, and a later insert
    /// reusing the old key could be applied before it.
    pub fn encode_into(
        &mut self,
        change: &Change,
        txn: &TxnContext,
        seq: u64,
        out: &mut Vec<Record>,
    ) -> Result<usize, UnkeyedChange> {
        self.encode_shaped(change, change, txn, seq, out)
    }

    /// [`Self::encode_into`] with the keys read from `change` and the payload from
    /// `shown` (the same change with columns excluded or masked, see [`tables`]).
    pub fn encode_shaped(
        &mut self,
        change: &Change,
        shown: &Change,
        txn: &TxnContext,
        seq: u64,
        out: &mut Vec<Record>,
    ) -> Result<usize, UnkeyedChange> {
        let columns = match &self.partition_key {
            PartitionKey::PrimaryKey => Some(&change.pk[..]),
            PartitionKey::Columns(columns) => Some(columns.as_slice()),
            PartitionKey::Table | PartitionKey::Fixed(_) => None,
        };
        let columns = columns.filter(|c| !c.is_empty());
        if let (PartitionKey::Columns(names), Kind::Insert | Kind::Update) =
            (&self.partition_key, change.kind)
        {
            let has_key = names.iter().all(|n| {
                find(&change.columns, n)
                    .or_else(|| find(&change.identity, n))
                    .is_some()
            });
            if has_key {
                self.tables_with_key.insert(&change.schema, &change.table);
            }
        }
        if let (Some(names), Kind::Update | Kind::Delete) = (columns, change.kind) {
            self.check_identity(change, txn, names)?;
            if change.kind == Kind::Update && key_changed(change, names) {
                let old_key = self.finish_key(keyed(change, names, KeySide::Old));
                let new_key = self.finish_key(keyed(change, names, KeySide::New));
                let delete = self.payload(shown, Kind::Delete, txn, seq, Extra::KeyChange);
                let insert = self.payload(shown, Kind::Insert, txn, seq + 1, Extra::KeyChange);
                out.push(Record::of_change(old_key, delete, change, Kind::Delete));
                out.push(Record::of_change(new_key, insert, change, Kind::Insert));
                return Ok(2);
            }
        }
        if self.format == RecordFormat::Native {
            self.names.learn(shown);
        }
        let data = self.payload(shown, change.kind, txn, seq, Extra::None);
        let key = self.partition_key(change);
        out.push(Record::of_change(key, data, change, change.kind));
        Ok(1)
    }

    /// A backfilled row (`row.kind` is [`Kind::Read`]), the `seq`-th record of the
    /// transaction `txn` (the chunk's high watermark), tagged with its chunk.
    pub fn encode_read(&mut self, row: &Change, txn: &TxnContext, seq: u64, chunk: u64) -> Record {
        self.encode_read_shaped(row, row, txn, seq, chunk)
    }

    /// [`Self::encode_read`] with the key read from `row` and the payload from `shown`.
    pub fn encode_read_shaped(
        &mut self,
        row: &Change,
        shown: &Change,
        txn: &TxnContext,
        seq: u64,
        chunk: u64,
    ) -> Record {
        let data = self.payload(shown, Kind::Read, txn, seq, Extra::Snapshot(chunk));
        Record::of_change(self.partition_key(row), data, row, Kind::Read)
    }

    /// The same encoder under another partition-key rule (a `tables:` entry's).
    pub fn with_partition_key(mut self, partition_key: PartitionKey) -> Self {
        self.partition_key = partition_key;
        self.tables_with_key.clear();
        self
    }
}

/// Tables by schema, looked up per row from the change's own names, without
/// building `schema.table` for each lookup.
#[derive(Debug, Clone, Default)]
struct TablesSeen(HashMap<String, HashSet<String>>);

impl TablesSeen {
    fn contains(&self, schema: &str, table: &str) -> bool {
        self.0.get(schema).is_some_and(|t| t.contains(table))
    }

    fn insert(&mut self, schema: &str, table: &str) {
        if !self.contains(schema, table) {
            self.0
                .entry(schema.to_string())
                .or_default()
                .insert(table.to_string());
        }
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests;
