//! A row change → one Kinesis record: the JSON payload and the partition key.
//!
//! Owns the record format documented in the README and the partition-key rules.
//! It never changes a value: column values are copied as the exact JSON text
//! wal2json printed, so a `numeric(40,10)` keeps every digit.

use sha2::{Digest, Sha256};

use crate::config::PartitionKey;
use crate::decode::{Change, Column, Kind};
use crate::lsn::Lsn;

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
}

impl Record {
    /// A record outside any table scope (tests, tools).
    pub fn new(partition_key: impl Into<String>, data: Vec<u8>) -> Self {
        Record {
            partition_key: partition_key.into(),
            data,
            table: 0,
            barrier: false,
        }
    }

    /// The size Kinesis counts against its record and request limits: the data
    /// blob plus the partition key.
    pub fn billed_size(&self) -> usize {
        self.data.len() + self.partition_key.len()
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

/// Builds records for one slot. Reuses nothing between records but the settings,
/// so it can be shared freely.
#[derive(Debug, Clone)]
pub struct RecordEncoder {
    database: String,
    partition_key: PartitionKey,
}

impl RecordEncoder {
    pub fn new(database: impl Into<String>, partition_key: PartitionKey) -> Self {
        RecordEncoder {
            database: database.into(),
            partition_key,
        }
    }

    /// Encode `change`, the `seq`-th change (from 0) of the transaction `txn`.
    pub fn encode(&self, change: &Change, txn: &TxnContext, seq: u64) -> Record {
        Record {
            partition_key: self.partition_key(change),
            data: self.payload(change, txn, seq),
            table: table_hash(&change.schema, &change.table),
            barrier: change.kind == Kind::Truncate,
        }
    }

    fn payload(&self, change: &Change, txn: &TxnContext, seq: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + change.columns.len() * 24);
        out.extend_from_slice(b"{\"kind\":\"");
        out.extend_from_slice(change.kind.as_str().as_bytes());
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
        let data = if change.kind == Kind::Delete {
            &change.identity
        } else {
            &change.columns
        };
        out.extend_from_slice(b",\"data\":");
        push_columns(&mut out, data);
        if !change.identity.is_empty() {
            out.extend_from_slice(b",\"old\":");
            push_columns(&mut out, &change.identity);
        }
        out.extend_from_slice(b",\"lsn\":");
        push_opt_lsn(&mut out, change.lsn);
        out.extend_from_slice(b",\"commit_lsn\":");
        push_opt_lsn(&mut out, txn.commit_lsn);
        out.extend_from_slice(b",\"xid\":");
        match txn.xid {
            Some(xid) => out.extend_from_slice(xid.to_string().as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"seq\":");
        out.extend_from_slice(seq.to_string().as_bytes());
        out.push(b'}');
        out
    }

    /// The partition key for `change` under this slot's [`PartitionKey`] rule.
    pub fn partition_key(&self, change: &Change) -> String {
        let key = match &self.partition_key {
            PartitionKey::Fixed(fixed) => return fixed.clone(),
            PartitionKey::Table => table_key(change),
            PartitionKey::PrimaryKey => {
                // Only the primary key names a row the same way in an INSERT (new
                // row) and a DELETE (identity): without it, fall back to the table
                // so that every change of the table keeps its order.
                keyed(change, change.pk.iter().map(String::as_str))
            }
            PartitionKey::Columns(columns) => keyed(change, columns.iter().map(String::as_str)),
        };
        if key.len() > MAX_PARTITION_KEY_BYTES {
            hex::encode(Sha256::digest(key.as_bytes()))
        } else {
            key
        }
    }
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

/// `schema.table` followed by `|value` for each named column, looked up in the new
/// row, else in the identity (a DELETE). With no names, or a name missing from the
/// change (say an UPDATE whose identity was not sent), the table alone.
fn keyed<'a>(change: &Change, names: impl Iterator<Item = &'a str>) -> String {
    let mut key = table_key(change);
    let base_len = key.len();
    let mut any = false;
    for name in names {
        let value = find(&change.columns, name).or_else(|| find(&change.identity, name));
        match value {
            Some(value) => {
                key.push('|');
                key.push_str(value.value.get());
                any = true;
            }
            None => {
                key.truncate(base_len);
                return key;
            }
        }
    }
    if !any {
        key.truncate(base_len);
    }
    key
}

fn find<'c>(columns: &'c [Column], name: &str) -> Option<&'c Column> {
    columns.iter().find(|c| c.name == name)
}

fn push_columns(out: &mut Vec<u8>, columns: &[Column]) {
    out.push(b'{');
    for (i, column) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        push_json_str(out, &column.name);
        out.push(b':');
        out.extend_from_slice(column.value.get().as_bytes());
    }
    out.push(b'}');
}

fn push_opt_lsn(out: &mut Vec<u8>, lsn: Option<Lsn>) {
    match lsn {
        Some(lsn) => {
            out.push(b'"');
            out.extend_from_slice(lsn.to_string().as_bytes());
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
        Column {
            name: name.into(),
            value: RawValue::from_string(raw.into()).unwrap(),
        }
    }

    fn change(kind: Kind, columns: Vec<Column>, identity: Vec<Column>) -> Change {
        Change {
            kind,
            schema: "public".into(),
            table: "orders".into(),
            columns,
            identity,
            pk: vec!["id".into()],
            lsn: Some(Lsn(0x10)),
        }
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
        let rec = enc.encode(&c, &txn(), 3);
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
        let rec = enc.encode(&c, &TxnContext::default(), 0);
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
        let t = enc.encode(&change(Kind::Truncate, vec![], vec![]), &txn(), 0);
        let i = enc.encode(
            &change(Kind::Insert, vec![col("id", "1")], vec![]),
            &txn(),
            1,
        );
        assert!(t.barrier);
        assert!(!i.barrier);
        assert_eq!(t.table, i.table, "one scope for every change of the table");
        let mut other = change(Kind::Insert, vec![col("id", "1")], vec![]);
        other.table = "customers".into();
        assert_ne!(enc.encode(&other, &txn(), 0).table, i.table);
    }

    #[test]
    fn truncate_has_empty_data() {
        let c = change(Kind::Truncate, vec![], vec![]);
        let rec = RecordEncoder::new("d", PartitionKey::PrimaryKey).encode(&c, &txn(), 0);
        let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
        assert_eq!(v["kind"], "truncate");
        assert_eq!(v["data"], serde_json::json!({}));
        assert_eq!(rec.partition_key, "public.orders");
    }
}
