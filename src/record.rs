//! A row change → one Kinesis record: the JSON payload and the partition key.
//!
//! Owns the record format documented in the README and the partition-key rules.
//! It never changes a value on its own: column values are copied as the exact JSON
//! text wal2json printed, so a `numeric(40,10)` keeps every digit, unless the slot's
//! value options ask for another form ([`types`], which never loses a digit either).

use std::collections::HashSet;

use sha2::{Digest, Sha256};

use crate::config::{FormatConfig, PartitionKey, RecordFormat, Timestamps};
use crate::decode::{Change, Column, Kind};
use crate::lsn::Lsn;

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
    tables_with_key: HashSet<String>,
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
}

impl RecordEncoder {
    pub fn new(database: impl Into<String>, partition_key: PartitionKey) -> Self {
        RecordEncoder {
            database: database.into(),
            partition_key,
            tables_with_key: HashSet::new(),
            slot: String::new(),
            format: RecordFormat::Native,
            values: types::ValueOptions::default(),
            shape_rules: shape::ShapeRules::default(),
            shapes: shape::ShapeCache::default(),
            hidden: Vec::new(),
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
            PartitionKey::PrimaryKey => Some(change.pk.as_slice()),
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
            if has_key && !self.tables_with_key.contains(&table_key(change)) {
                self.tables_with_key.insert(table_key(change));
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
        let data = self.payload(shown, change.kind, txn, seq, Extra::None);
        let key = self.partition_key(change);
        out.push(Record::of_change(key, data, change, change.kind));
        Ok(1)
    }

    /// A backfilled row (`row.kind` is [`Kind::Read`]), the `seq`-th record of the
    /// transaction `txn` (the chunk's high watermark), tagged with its chunk.
    pub fn encode_read(&self, row: &Change, txn: &TxnContext, seq: u64, chunk: u64) -> Record {
        self.encode_read_shaped(row, row, txn, seq, chunk)
    }

    /// [`Self::encode_read`] with the key read from `row` and the payload from `shown`.
    pub fn encode_read_shaped(
        &self,
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

    /// Under `primary_key` the change names its key columns, so a missing one is
    /// certain. Under `{columns}` a column missing from the identity may be missing
    /// from the table (keyed by the table throughout, which is consistent): certain
    /// for an update whose new row has it, and for a delete of a table whose rows
    /// were seen with it. The start-up check covers the tables it cannot tell.
    fn check_identity(
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
                _ => self.tables_with_key.contains(&table_key(change)),
            },
        };
        if !certain {
            return Ok(());
        }
        Err(UnkeyedChange {
            kind: change.kind.as_str(),
            table: table_key(change),
            lsn: change.lsn.or(txn.commit_lsn).unwrap_or_default(),
            missing,
            identity: change.identity.iter().map(|c| c.name.clone()).collect(),
        })
    }

    fn payload(
        &self,
        change: &Change,
        kind: Kind,
        txn: &TxnContext,
        seq: u64,
        extra: Extra,
    ) -> Vec<u8> {
        if self.format == RecordFormat::Debezium {
            // Debezium's `after` carries an unchanged TOASTed column as its placeholder
            // (`unavailable.value.placeholder`); it has no field for `list`.
            let left = if kind == Kind::Delete {
                Vec::new()
            } else {
                self.unchanged_toast_columns(change)
            };
            let rules = &self.shape_rules;
            if rules.unchanged_toast == crate::config::UnchangedToast::Placeholder
                && !left.is_empty()
            {
                let mut filled = change.clone();
                filled.columns.extend(left.iter().map(|name| {
                    let marker = serde_json::to_string(&rules.placeholder).unwrap_or_default();
                    Column::new(
                        *name,
                        serde_json::value::RawValue::from_string(marker).unwrap_or_default(),
                    )
                }));
                let (slot, db, values) = (&self.slot, &self.database, self.values);
                return debezium::payload(&filled, kind, txn, slot, db, values);
            }
            return debezium::payload(change, kind, txn, &self.slot, &self.database, self.values);
        }
        let mut out = Vec::with_capacity(128 + change.columns.len() * 24);
        out.extend_from_slice(b"{\"kind\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.extend_from_slice(b"\",\"database\":");
        push_json_str(&mut out, &self.database);
        out.extend_from_slice(b",\"schema\":");
        push_json_str(&mut out, &change.schema);
        out.extend_from_slice(b",\"table\":");
        push_json_str(&mut out, &change.table);
        out.extend_from_slice(b",\"timestamp\":");
        push_opt_str(&mut out, txn.timestamp.as_deref());
        // A DELETE has no new row: its `data` is the old key / identity, so that a
        // consumer always finds the row's key in `data`.
        let data = if kind == Kind::Delete {
            &change.identity
        } else {
            &change.columns
        };
        out.extend_from_slice(b",\"data\":");
        push_columns(&mut out, data, self.values);
        if kind != Kind::Delete {
            let left = self.unchanged_toast_columns(change);
            let rules = &self.shape_rules;
            toast::amend_data(&mut out, &left, rules.unchanged_toast, &rules.placeholder);
        }
        if !change.identity.is_empty() {
            out.extend_from_slice(b",\"old\":");
            push_columns(&mut out, &change.identity, self.values);
        }
        out.extend_from_slice(b",\"lsn\":");
        push_opt_lsn(&mut out, change.lsn);
        out.extend_from_slice(b",\"commit_lsn\":");
        push_opt_lsn(&mut out, txn.commit_lsn);
        out.extend_from_slice(b",\"xid\":");
        match txn.xid {
            Some(xid) => out.extend_from_slice(itoa::Buffer::new().format(xid).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
        match extra {
            Extra::None => {}
            Extra::KeyChange => out.extend_from_slice(b",\"key_change\":true"),
            Extra::Snapshot(chunk) => {
                out.extend_from_slice(b",\"snapshot\":{\"table\":");
                push_json_str(&mut out, &table_key(change));
                out.extend_from_slice(b",\"chunk\":");
                out.extend_from_slice(itoa::Buffer::new().format(chunk).as_bytes());
                out.push(b'}');
            }
        }
        out.push(b'}');
        out
    }

    /// The partition key for `change` under this slot's [`PartitionKey`] rule (for
    /// an update, the key of its new row).
    pub fn partition_key(&self, change: &Change) -> String {
        let key = match &self.partition_key {
            PartitionKey::Fixed(fixed) => return fixed.clone(),
            PartitionKey::Table => table_key(change),
            // Only the primary key names a row the same way in an INSERT (new row)
            // and a DELETE (identity); a table without one is keyed by the table.
            PartitionKey::PrimaryKey => keyed(change, &change.pk, KeySide::New),
            PartitionKey::Columns(columns) => keyed(change, columns, KeySide::New),
        };
        self.finish_key(key)
    }

    fn finish_key(&self, key: String) -> String {
        if key.len() > MAX_PARTITION_KEY_BYTES {
            hex::encode(Sha256::digest(key.as_bytes()))
        } else {
            key
        }
    }
}

/// What a record says besides the change itself.
#[derive(Clone, Copy)]
enum Extra {
    None,
    /// One half of an update that changed the key: `"key_change": true`.
    KeyChange,
    /// A backfilled row: `"snapshot": {"table": "schema.table", "chunk": n}`.
    Snapshot(u64),
}

/// Which version of the row a key is read from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum KeySide {
    /// The new row (insert, update), else the identity (a delete; an update's
    /// unchanged TOASTed column, which wal2json leaves out of the new row).
    New,
    /// The identity: the row before an update.
    Old,
}

/// An update whose identity carries every key column (checked before) with a value
/// other than the new row's. Compared as wal2json's text: the key is that text.
fn key_changed(change: &Change, names: &[String]) -> bool {
    names.iter().any(|name| {
        match (find(&change.columns, name), find(&change.identity, name)) {
            (Some(new), Some(old)) => new.value.get() != old.value.get(),
            // Not in the new row: an unchanged TOASTed value.
            _ => false,
        }
    })
}

/// The truncate-barrier scope of a table: stable within the process, and the same
/// for every change of the table whatever its partition key.
fn table_hash(schema: &str, table: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    schema.hash(&mut h);
    table.hash(&mut h);
    h.finish()
}

fn table_key(change: &Change) -> String {
    let mut key = String::with_capacity(change.schema.len() + change.table.len() + 1);
    key.push_str(&change.schema);
    key.push('.');
    key.push_str(&change.table);
    key
}

/// `schema.table` followed by `|value` for each named column, read from `side`. With
/// no names, or a name missing from the change, the table alone.
fn keyed(change: &Change, names: &[String], side: KeySide) -> String {
    let mut key = table_key(change);
    let base_len = key.len();
    for name in names {
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

fn find<'c>(columns: &'c [Column], name: &str) -> Option<&'c Column> {
    columns.iter().find(|c| c.name == name)
}

fn push_columns(out: &mut Vec<u8>, columns: &[Column], values: types::ValueOptions) {
    out.push(b'{');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, &column.name);
        out.push(b':');
        types::push_value(out, column, values);
    }
    out.push(b'}');
}

fn push_opt_lsn(out: &mut Vec<u8>, lsn: Option<Lsn>) {
    match lsn {
        Some(lsn) => {
            out.push(b'"');
            lsn.write_to(out);
            out.push(b'"');
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Writing a &str into a Vec cannot fail; fall back to an empty string rather
    // than panic if serde_json ever says otherwise.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    fn col(name: &str, raw: &str) -> Column {
        Column::new(name, RawValue::from_string(raw.into()).unwrap())
    }

    fn change(kind: Kind, columns: Vec<Column>, identity: Vec<Column>) -> Change {
        Change {
            lsn: Some(Lsn(0x10)),
            ..Change::of_table(kind, "orders", columns, identity)
        }
    }

    /// The one record `change` encodes to.
    fn encode(enc: &RecordEncoder, c: &Change, txn: &TxnContext, seq: u64) -> Record {
        let mut out = Vec::new();
        assert_eq!(enc.clone().encode_into(c, txn, seq, &mut out), Ok(1));
        out.pop().unwrap()
    }

    fn txn() -> TxnContext {
        TxnContext {
            xid: Some(7),
            timestamp: Some("2026-01-01 00:00:00+00".into()),
            commit_lsn: Some(Lsn(0x20)),
        }
    }

    #[test]
    fn insert_payload_keeps_exact_values() {
        let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
        let big = "12345678901234567890.1234567890";
        let c = change(
            Kind::Insert,
            vec![
                col("id", "1"),
                col("amount", big),
                col("note", "\"a\\\"b\\nc é\""),
            ],
            vec![],
        );
        let rec = encode(&enc, &c, &txn(), 3);
        let text = String::from_utf8(rec.data.clone()).unwrap();
        assert!(text.contains(&format!("\"amount\":{big}")), "{text}");
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "insert");
        assert_eq!(v["database"], "shop");
        assert_eq!(v["schema"], "public");
        assert_eq!(v["table"], "orders");
        assert_eq!(v["timestamp"], "2026-01-01 00:00:00+00");
        assert_eq!(v["data"]["note"], "a\"b\nc é");
        assert_eq!(v["lsn"], "0/10");
        assert_eq!(v["commit_lsn"], "0/20");
        assert_eq!(v["xid"], 7);
        assert_eq!(v["seq"], 3);
        assert!(v.get("old").is_none());
        assert_eq!(rec.partition_key, "public.orders|1");
    }

    #[test]
    fn delete_carries_its_key_in_data_and_old() {
        let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
        let c = change(Kind::Delete, vec![], vec![col("id", "42")]);
        let rec = encode(&enc, &c, &TxnContext::default(), 0);
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "delete");
        assert_eq!(v["data"]["id"], 42);
        assert_eq!(v["old"]["id"], 42);
        assert_eq!(v["timestamp"], serde_json::Value::Null);
        assert_eq!(v["xid"], serde_json::Value::Null);
        // Same key as the insert of the same row, so both land on one shard in order.
        assert_eq!(rec.partition_key, "public.orders|42");
    }

    #[test]
    fn primary_key_change_is_a_delete_under_the_old_key_then_an_insert_under_the_new() {
        let mut enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
        let c = change(
            Kind::Update,
            vec![col("id", "30"), col("v", "\"x\"")],
            vec![col("id", "3")],
        );
        let mut out = Vec::new();
        assert_eq!(enc.encode_into(&c, &txn(), 4, &mut out), Ok(2));
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|r| serde_json::from_slice(&r.data).unwrap())
            .collect();
        assert_eq!(out[0].partition_key, "public.orders|3");
        assert_eq!(v[0]["kind"], "delete");
        assert_eq!(v[0]["data"], serde_json::json!({"id": 3}));
        assert_eq!(out[1].partition_key, "public.orders|30");
        assert_eq!(v[1]["kind"], "insert");
        assert_eq!(v[1]["data"], serde_json::json!({"id": 30, "v": "x"}));
        assert_eq!(v[1]["old"], serde_json::json!({"id": 3}));
        for (i, v) in v.iter().enumerate() {
            assert_eq!(v["key_change"], true);
            assert_eq!(v["seq"], 4 + i);
            assert_eq!(v["commit_lsn"], "0/20");
        }
    }

    #[test]
    fn update_keeping_its_key_stays_one_record_without_the_mark() {
        let enc = RecordEncoder::new("shop", PartitionKey::PrimaryKey);
        // The second column is missing from the new row: an unchanged TOASTed value.
        let mut c = change(Kind::Update, vec![col("id", "3")], vec![col("id", "3")]);
        c.pk = vec!["id".into(), "big".into()];
        c.identity.push(col("big", "\"t\""));
        let rec = encode(&enc, &c, &txn(), 0);
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "update");
        assert!(v.get("key_change").is_none(), "{v}");
        assert_eq!(rec.partition_key, "public.orders|3|\"t\"");
        // Under `table` the key never depends on the row: no pair.
        let moved = change(Kind::Update, vec![col("id", "4")], vec![col("id", "3")]);
        let rec = encode(
            &RecordEncoder::new("d", PartitionKey::Table),
            &moved,
            &txn(),
            0,
        );
        assert_eq!(rec.partition_key, "public.orders");
    }

    #[test]
    fn changed_partition_columns_are_a_key_change_too() {
        let mut enc = RecordEncoder::new("d", PartitionKey::Columns(vec!["region".into()]));
        let c = change(
            Kind::Update,
            vec![col("id", "1"), col("region", "\"us\"")],
            vec![col("id", "1"), col("region", "\"eu\"")],
        );
        let mut out = Vec::new();
        assert_eq!(enc.encode_into(&c, &txn(), 0, &mut out), Ok(2));
        let keys: Vec<&str> = out.iter().map(|r| r.partition_key.as_str()).collect();
        assert_eq!(keys, ["public.orders|\"eu\"", "public.orders|\"us\""]);
    }

    #[test]
    fn delete_without_its_key_in_the_identity_is_refused_not_keyed_by_table() {
        // REPLICA IDENTITY USING INDEX on a unique index that lacks the primary key.
        let c = change(Kind::Delete, vec![], vec![col("u", "11")]);
        let mut out = Vec::new();
        let err = RecordEncoder::new("d", PartitionKey::PrimaryKey)
            .encode_into(&c, &txn(), 0, &mut out)
            .unwrap_err();
        assert_eq!(err.missing, ["id"]);
        assert_eq!(err.lsn, Lsn(0x10));
        let text = err.to_string();
        assert!(
            text.contains("public.orders")
                && text.contains("0/10")
                && text.contains("REPLICA IDENTITY FULL"),
            "{text}"
        );
        assert!(out.is_empty());
        // An update can tell: its new row has the column, its identity does not.
        let cols = PartitionKey::Columns(vec!["region".into()]);
        let upd = change(
            Kind::Update,
            vec![col("id", "1"), col("region", "\"us\"")],
            vec![col("id", "1")],
        );
        assert!(RecordEncoder::new("d", cols.clone())
            .encode_into(&upd, &txn(), 0, &mut out)
            .is_err());
        // A delete alone cannot (the table may lack the column): the start-up check
        // covers it; once a row of the table showed the column, it can.
        let del = change(Kind::Delete, vec![], vec![col("id", "1")]);
        let mut enc = RecordEncoder::new("d", cols);
        assert_eq!(enc.encode_into(&del, &txn(), 0, &mut out), Ok(1));
        let ins = change(
            Kind::Insert,
            vec![col("id", "1"), col("region", "\"eu\"")],
            vec![],
        );
        assert_eq!(enc.encode_into(&ins, &txn(), 0, &mut out), Ok(1));
        assert!(enc.encode_into(&del, &txn(), 0, &mut out).is_err());
    }

    #[test]
    fn partition_key_rules() {
        let c = change(
            Kind::Insert,
            vec![col("id", "5"), col("region", "\"eu\"")],
            vec![],
        );
        assert_eq!(
            RecordEncoder::new("d", PartitionKey::Table).partition_key(&c),
            "public.orders"
        );
        assert_eq!(
            RecordEncoder::new("d", PartitionKey::Fixed("all".into())).partition_key(&c),
            "all"
        );
        let cols = PartitionKey::Columns(vec!["region".into(), "id".into()]);
        assert_eq!(
            RecordEncoder::new("d", cols).partition_key(&c),
            "public.orders|\"eu\"|5"
        );
        let mut no_pk = c.clone();
        no_pk.pk.clear();
        assert_eq!(
            RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&no_pk),
            "public.orders"
        );
        let missing = PartitionKey::Columns(vec!["nope".into()]);
        assert_eq!(
            RecordEncoder::new("d", missing).partition_key(&c),
            "public.orders"
        );
    }

    #[test]
    fn long_partition_keys_are_hashed() {
        let long = format!("\"{}\"", "x".repeat(300));
        let c = change(Kind::Insert, vec![col("id", &long)], vec![]);
        let key = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
        assert_eq!(key.len(), 64);
        assert!(key.chars().all(|ch| ch.is_ascii_hexdigit()));
        let again = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
        assert_eq!(
            key, again,
            "hashing must be deterministic so a row keeps its shard"
        );
    }

    #[test]
    fn keys_over_256_bytes_are_hashed_even_when_under_256_characters() {
        // 130 two-byte characters: 130 characters, 260 bytes plus the table prefix.
        // Kinesis refuses such a key with InvalidArgumentException.
        let wide = format!("\"{}\"", "é".repeat(130));
        let c = change(Kind::Insert, vec![col("id", &wide)], vec![]);
        let key = RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&c);
        assert!(key.len() <= MAX_PARTITION_KEY_BYTES, "{key}");
        assert_eq!(key.len(), 64);
        let short = change(Kind::Insert, vec![col("id", "\"é\"")], vec![]);
        assert_eq!(
            RecordEncoder::new("d", PartitionKey::PrimaryKey).partition_key(&short),
            "public.orders|\"é\""
        );
    }

    #[test]
    fn truncate_is_a_barrier_scoped_to_its_table() {
        let enc = RecordEncoder::new("d", PartitionKey::PrimaryKey);
        let t = encode(&enc, &change(Kind::Truncate, vec![], vec![]), &txn(), 0);
        let i = encode(
            &enc,
            &change(Kind::Insert, vec![col("id", "1")], vec![]),
            &txn(),
            1,
        );
        assert!(t.barrier);
        assert!(!i.barrier);
        assert_eq!(t.table, i.table, "one scope for every change of the table");
        let mut other = change(Kind::Insert, vec![col("id", "1")], vec![]);
        other.table = "customers".into();
        assert_ne!(encode(&enc, &other, &txn(), 0).table, i.table);
    }

    #[test]
    fn a_read_record_carries_its_chunk_and_the_live_key() {
        let enc = RecordEncoder::new("d", PartitionKey::PrimaryKey);
        let row = change(Kind::Read, vec![col("id", "7"), col("v", "\"x\"")], vec![]);
        let rec = enc.encode_read(&row, &txn(), 4, 2);
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "read");
        assert_eq!(v["data"], serde_json::json!({"id": 7, "v": "x"}));
        assert_eq!(v["seq"], 4);
        assert_eq!(
            v["snapshot"],
            serde_json::json!({"table": "public.orders", "chunk": 2})
        );
        assert!(v.get("old").is_none() && v.get("key_change").is_none());
        let live = change(Kind::Insert, vec![col("id", "7")], vec![]);
        assert_eq!(
            rec.partition_key,
            enc.partition_key(&live),
            "same key as the row's changes"
        );
        assert!(!rec.barrier);
        assert!(rec.background, "the sink sends live changes first");
    }

    #[test]
    fn truncate_has_empty_data() {
        let c = change(Kind::Truncate, vec![], vec![]);
        let rec = encode(
            &RecordEncoder::new("d", PartitionKey::PrimaryKey),
            &c,
            &txn(),
            0,
        );
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "truncate");
        assert_eq!(v["data"], serde_json::json!({}));
        assert_eq!(rec.partition_key, "public.orders");
    }
}
