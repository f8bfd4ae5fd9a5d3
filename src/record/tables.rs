//! A slot's `tables:` rules applied to its changes: which tables are skipped,
//! which stream and partition key each table's records get, and which columns are
//! left out or masked.
//!
//! Owns the one resolver (first matching entry wins, cached per table) and the
//! column shaping. Excluded and masked columns are shaped in every record that
//! carries the row: `data`, `old`, both halves of a key change, backfilled `read`
//! rows. A partition key never carries such a column's real value: it enters the
//! key as its salted SHA-256, so the same row keeps one key (and its order) while
//! the value stays off the stream. It never changes a column it was not told to.

use rustc_hash::FxHashMap as HashMap;

use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use super::{Record, RecordEncoder, TxnContext, UnkeyedChange};
use crate::config::{MaskMethod, PartitionKey, TableEntry, TablesConfig};
use crate::decode::{Change, ColumnType};

/// What a masked value becomes under `redact`.
pub const REDACTED: &str = "\"***\"";

/// How one table is treated.
#[derive(Debug, Clone)]
struct Rule {
    skip: bool,
    stream: u16,
    /// The entry's own partition key; `None` = the slot's.
    partition_key: Option<PartitionKey>,
    exclude: Vec<String>,
    masks: Vec<(String, MaskMethod)>,
}

impl Rule {
    fn shapes(&self) -> bool {
        !self.exclude.is_empty() || !self.masks.is_empty()
    }
}

/// The slot's encoder under its `tables:` rules.
#[derive(Debug, Clone)]
pub struct TableRouter {
    /// Entry `i`'s rule at `i`; the rule for tables no entry matches last.
    rules: Vec<Rule>,
    globs: Vec<crate::config::TableGlob>,
    /// One encoder for every table, so that every table shares one shape cache; an
    /// entry's own partition key and excluded columns are swapped in around a call.
    encoder: RecordEncoder,
    /// schema → table → rule index: one glob walk per table, not per change.
    cache: HashMap<String, HashMap<String, usize>>,
    salt: Vec<u8>,
}

impl TableRouter {
    /// `streams` is the slot's stream list (`SlotConfig::streams`), which every
    /// entry's stream is in.
    pub fn new(base: RecordEncoder, tables: &TablesConfig, kns_stream: &str) -> TableRouter {
        let streams: Vec<&str> = std::iter::once(kns_stream)
            .chain(tables.extra_streams(kns_stream))
            .collect();
        let mut rules = Vec::with_capacity(tables.entries.len() + 1);
        for entry in &tables.entries {
            rules.push(rule(entry, &streams));
        }
        rules.push(Rule {
            skip: false,
            stream: 0,
            partition_key: None,
            exclude: Vec::new(),
            masks: Vec::new(),
        });
        TableRouter {
            rules,
            globs: tables.entries.iter().map(|e| e.glob.clone()).collect(),
            encoder: base,
            cache: HashMap::default(),
            salt: tables
                .mask_salt
                .as_ref()
                .map(|s| s.0.expose().as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The index of the rule for `schema.table`: the first matching entry's.
    fn resolve(&mut self, schema: &str, table: &str) -> usize {
        if let Some(&i) = self.cache.get(schema).and_then(|t| t.get(table)) {
            return i;
        }
        let i = self
            .globs
            .iter()
            .position(|g| g.matches(schema, table))
            .unwrap_or(self.globs.len());
        self.cache
            .entry(schema.to_string())
            .or_default()
            .insert(table.to_string(), i);
        i
    }

    /// Whether `schema.table`'s changes are put on a stream at all.
    pub fn streams_table(&mut self, schema: &str, table: &str) -> bool {
        let i = self.resolve(schema, table);
        !self.rules[i].skip
    }

    /// [`RecordEncoder::encode_into`] under the table's rule: nothing for a skipped
    /// table (returns 0), else the records tagged with their stream.
    pub fn encode_into(
        &mut self,
        change: &Change,
        txn: &TxnContext,
        seq: u64,
        out: &mut Vec<Record>,
    ) -> Result<usize, UnkeyedChange> {
        let i = self.resolve(&change.schema, &change.table);
        if self.rules[i].skip {
            return Ok(0);
        }
        let start = out.len();
        let shaped = self.rules[i]
            .shapes()
            .then(|| shape(change, &self.rules[i], &self.salt));
        let n = under_rule(
            &mut self.encoder,
            &mut self.rules[i],
            |encoder| match &shaped {
                Some((keys, shown)) => encoder.encode_shaped(keys, shown, txn, seq, out),
                None => encoder.encode_into(change, txn, seq, out),
            },
        )?;
        let stream = self.rules[i].stream;
        for record in &mut out[start..] {
            record.stream = stream;
        }
        Ok(n)
    }

    /// [`RecordEncoder::encode_read`] under the table's rule; `None` for a skipped table.
    pub fn encode_read(
        &mut self,
        row: &Change,
        txn: &TxnContext,
        seq: u64,
        chunk: u64,
    ) -> Option<Record> {
        let i = self.resolve(&row.schema, &row.table);
        if self.rules[i].skip {
            return None;
        }
        let shaped = self.rules[i]
            .shapes()
            .then(|| shape(row, &self.rules[i], &self.salt));
        let mut record = under_rule(
            &mut self.encoder,
            &mut self.rules[i],
            |encoder| match &shaped {
                Some((keys, shown)) => encoder.encode_read_shaped(keys, shown, txn, seq, chunk),
                None => encoder.encode_read(row, txn, seq, chunk),
            },
        );
        record.stream = self.rules[i].stream;
        Some(record)
    }

    /// The table shapes the encoder reads (`pipeline::catalog` fills them).
    pub fn shapes_mut(&mut self) -> &mut super::shape::ShapeCache {
        self.encoder.shapes_mut()
    }

    /// [`RecordEncoder::report_under_root`].
    pub fn report_under_root(&self, change: &mut Change) -> Option<(String, String)> {
        self.encoder.report_under_root(change)
    }
}

/// Run `f` on `encoder` with `rule`'s partition key and excluded columns in place
/// of the slot's, and put the slot's back after: swapped, not cloned, per change.
fn under_rule<T>(
    encoder: &mut RecordEncoder,
    rule: &mut Rule,
    f: impl FnOnce(&mut RecordEncoder) -> T,
) -> T {
    if let Some(key) = rule.partition_key.as_mut() {
        std::mem::swap(&mut encoder.partition_key, key);
    }
    std::mem::swap(&mut encoder.hidden, &mut rule.exclude);
    let out = f(encoder);
    std::mem::swap(&mut encoder.hidden, &mut rule.exclude);
    if let Some(key) = rule.partition_key.as_mut() {
        std::mem::swap(&mut encoder.partition_key, key);
    }
    out
}

fn rule(entry: &TableEntry, streams: &[&str]) -> Rule {
    let stream = entry
        .stream
        .as_deref()
        .and_then(|s| streams.iter().position(|x| *x == s))
        .unwrap_or(0);
    Rule {
        skip: entry.skip,
        stream: u16::try_from(stream).unwrap_or(0),
        partition_key: entry.partition_key.clone(),
        exclude: entry.exclude_columns.clone(),
        masks: entry.mask_columns.clone(),
    }
}

/// The change as keys see it (every excluded or masked column hashed) and as the
/// record shows it (excluded columns gone, masked ones replaced).
fn shape(change: &Change, rule: &Rule, salt: &[u8]) -> (Change, Change) {
    let mut keys = change.clone();
    let mut shown = change.clone();
    for (k, s) in [
        (&mut keys.columns, &mut shown.columns),
        (&mut keys.identity, &mut shown.identity),
    ] {
        for column in k.iter_mut() {
            if rule.exclude.contains(&column.name)
                || rule.masks.iter().any(|(n, _)| *n == column.name)
            {
                column.value = hashed(&column.value, salt);
                column.ty = ColumnType::Other;
            }
        }
        s.retain(|c| !rule.exclude.contains(&c.name));
        for column in s.iter_mut() {
            if let Some((_, method)) = rule.masks.iter().find(|(n, _)| *n == column.name) {
                column.value = masked(&column.value, *method, salt);
                // A hash or `***` is text now, whatever the column's type was.
                column.ty = ColumnType::Other;
            }
        }
    }
    (keys, shown)
}

fn masked(value: &RawValue, method: MaskMethod, salt: &[u8]) -> Box<RawValue> {
    match method {
        _ if value.get() == "null" => value.to_owned(),
        MaskMethod::Sha256 => hashed(value, salt),
        MaskMethod::Redact => raw(REDACTED),
    }
}

/// `"<hex sha256(salt ‖ value)>"`, the value being a string's text (unescaped) or
/// any other JSON value's text as printed; `null` stays `null`.
pub fn hashed(value: &RawValue, salt: &[u8]) -> Box<RawValue> {
    let text = value.get();
    if text == "null" {
        return value.to_owned();
    }
    let mut h = Sha256::new();
    h.update(salt);
    match serde_json::from_str::<String>(text) {
        Ok(s) => h.update(s.as_bytes()),
        Err(_) => h.update(text.as_bytes()),
    }
    raw(&format!("\"{}\"", hex::encode(h.finalize())))
}

fn raw(json: &str) -> Box<RawValue> {
    // Hex digits and `***` in quotes are always valid JSON.
    RawValue::from_string(json.to_string()).unwrap_or_else(|_| Box::<RawValue>::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PartitionKey, TableGlob};
    use crate::decode::{Column, Kind};

    fn col(name: &str, raw: &str) -> Column {
        Column::new(name, RawValue::from_string(raw.into()).unwrap())
    }

    fn change(kind: Kind, table: &str, columns: Vec<Column>, identity: Vec<Column>) -> Change {
        Change::of_table(kind, table, columns, identity)
    }

    fn entry(glob: &str) -> TableEntry {
        TableEntry {
            glob: TableGlob::parse(glob).unwrap(),
            skip: false,
            stream: None,
            partition_key: None,
            exclude_columns: Vec::new(),
            mask_columns: Vec::new(),
            partition_root: None,
            oversize: None,
        }
    }

    fn router(entries: Vec<TableEntry>, salt: Option<&str>) -> TableRouter {
        let tables = TablesConfig {
            entries,
            mask_salt: salt.map(|s| crate::config::SaltSecret(crate::config::Secret::new(s))),
        };
        TableRouter::new(
            RecordEncoder::new("db", PartitionKey::PrimaryKey),
            &tables,
            "main",
        )
    }

    fn json(r: &Record) -> serde_json::Value {
        serde_json::from_slice(&r.data).unwrap()
    }

    fn sha(salt: &str, v: &str) -> String {
        hex::encode(Sha256::digest(format!("{salt}{v}").as_bytes()))
    }

    #[test]
    fn first_matching_entry_wins_and_unmatched_tables_keep_the_defaults() {
        let mut orders = entry("public.orders");
        orders.stream = Some("orders-cdc".into());
        let mut audit = entry("public.audit_*");
        audit.skip = true;
        let mut all = entry("public.*");
        all.stream = Some("rest".into());
        let mut r = router(vec![orders, audit, all], None);
        let txn = TxnContext::default();
        let mut out = Vec::new();
        let ins = |t: &str| change(Kind::Insert, t, vec![col("id", "1")], vec![]);
        assert_eq!(r.encode_into(&ins("orders"), &txn, 0, &mut out).unwrap(), 1);
        assert_eq!(
            r.encode_into(&ins("audit_log"), &txn, 1, &mut out).unwrap(),
            0
        );
        assert_eq!(r.encode_into(&ins("items"), &txn, 1, &mut out).unwrap(), 1);
        let mut other = ins("x");
        other.schema = "sales".into();
        assert_eq!(r.encode_into(&other, &txn, 2, &mut out).unwrap(), 1);
        let streams: Vec<u16> = out.iter().map(|r| r.stream).collect();
        assert_eq!(streams, [1, 2, 0]);
        assert!(!r.streams_table("public", "audit_x") && r.streams_table("public", "o"));
        assert_eq!(r.cache["public"].len(), 5, "one cache entry per table");
    }

    #[test]
    fn excluded_and_masked_columns_are_shaped_in_data_and_old_and_key_change_halves() {
        let mut e = entry("public.users");
        e.exclude_columns = vec!["card".into()];
        e.mask_columns = vec![
            ("email".into(), MaskMethod::Sha256),
            ("name".into(), MaskMethod::Redact),
        ];
        e.partition_key = Some(PartitionKey::Columns(vec!["email".into()]));
        let mut r = router(vec![e], Some("pepper"));
        let txn = TxnContext::default();
        let row = |email: &str| {
            vec![
                col("id", "1"),
                col("email", &format!("\"{email}\"")),
                col("name", "\"Ann\""),
                col("card", "\"4111\""),
            ]
        };
        let mut out = Vec::new();
        // An update changing the key column: two records, both shaped.
        let upd = change(Kind::Update, "users", row("b@x"), row("a@x"));
        assert_eq!(r.encode_into(&upd, &txn, 0, &mut out).unwrap(), 2);
        let del = change(Kind::Delete, "users", vec![], row("b@x"));
        r.encode_into(&del, &txn, 2, &mut out).unwrap();
        for rec in &out {
            let v = json(rec);
            for side in ["data", "old"] {
                let cols = &v[side];
                assert!(cols.get("card").is_none(), "{side}: {v}");
                assert_eq!(cols["name"], "***", "{side}: {v}");
                let email = cols["email"].as_str().unwrap();
                assert!(
                    email == sha("pepper", "a@x") || email == sha("pepper", "b@x"),
                    "{side}: {v}"
                );
                assert_eq!(cols["id"], 1);
            }
            let text = String::from_utf8_lossy(&rec.data);
            assert!(!text.contains("4111") && !text.contains("@x") && !text.contains("Ann"));
            assert!(!rec.partition_key.contains("@x"), "{}", rec.partition_key);
        }
        assert_eq!(
            out[0].partition_key,
            format!("public.users|\"{}\"", sha("pepper", "a@x"))
        );
        assert_eq!(
            out[1].partition_key,
            format!("public.users|\"{}\"", sha("pepper", "b@x"))
        );
        assert_eq!(
            out[2].partition_key, out[1].partition_key,
            "the row keeps its key"
        );
        // A backfilled row is shaped the same way.
        let read = change(Kind::Read, "users", row("b@x"), vec![]);
        let rec = r.encode_read(&read, &txn, 0, 7).unwrap();
        assert_eq!(rec.partition_key, out[1].partition_key);
        assert_eq!(json(&rec)["data"]["email"], sha("pepper", "b@x"));
        assert!(json(&rec)["data"].get("card").is_none());
    }

    #[test]
    fn an_excluded_primary_key_still_keys_the_row_without_showing_it() {
        let mut e = entry("public.t");
        e.exclude_columns = vec!["id".into()];
        let mut r = router(vec![e], None);
        let txn = TxnContext::default();
        let mut out = Vec::new();
        let ins = change(
            Kind::Insert,
            "t",
            vec![col("id", "42"), col("v", "1")],
            vec![],
        );
        let del = change(Kind::Delete, "t", vec![], vec![col("id", "42")]);
        r.encode_into(&ins, &txn, 0, &mut out).unwrap();
        r.encode_into(&del, &txn, 1, &mut out).unwrap();
        assert_eq!(out[0].partition_key, out[1].partition_key);
        assert_eq!(
            out[0].partition_key,
            format!("public.t|\"{}\"", sha("", "42"))
        );
        assert!(json(&out[1])["data"].as_object().unwrap().is_empty());
    }

    #[test]
    fn nulls_stay_null_and_skipped_reads_are_dropped() {
        let mut e = entry("public.t");
        e.mask_columns = vec![("v".into(), MaskMethod::Redact)];
        let mut skip = entry("public.s");
        skip.skip = true;
        let mut r = router(vec![e, skip], None);
        let txn = TxnContext::default();
        let mut out = Vec::new();
        let ins = change(
            Kind::Insert,
            "t",
            vec![col("id", "1"), col("v", "null")],
            vec![],
        );
        r.encode_into(&ins, &txn, 0, &mut out).unwrap();
        assert!(json(&out[0])["data"]["v"].is_null());
        let read = change(Kind::Read, "s", vec![col("id", "1")], vec![]);
        assert!(r.encode_read(&read, &txn, 0, 0).is_none());
    }

    #[test]
    fn what_the_list_writes_for_wal2json_reads_back_as_the_same_table() {
        use crate::decode::tables::{table_patterns, TablePattern};
        let glob = TableGlob::parse(r"my\.s.x\*y, z").unwrap();
        let entry = glob.wal2json_entry().unwrap();
        assert_eq!(
            table_patterns(&entry),
            [Ok(TablePattern {
                schema: Some("my.s".into()),
                table: Some("x*y, z".into())
            })]
        );
    }

    #[test]
    fn an_excluded_column_is_never_named_as_unchanged_toast_and_entries_keep_their_own_key() {
        use crate::config::{ShapeConfig, UnchangedToast};
        use crate::record::shape::{ShapeColumn, ShapeRules, TableShape};
        let mut docs = entry("public.docs");
        docs.exclude_columns = vec!["secret".into()];
        docs.partition_key = Some(PartitionKey::Table);
        let tables = TablesConfig {
            entries: vec![docs],
            mask_salt: None,
        };
        let rules = ShapeRules::from_config(&ShapeConfig {
            unchanged_toast: UnchangedToast::List,
            ..ShapeConfig::default()
        });
        let mut r = TableRouter::new(
            RecordEncoder::new("db", PartitionKey::PrimaryKey).with_shape_rules(rules),
            &tables,
            "main",
        );
        let shape = TableShape {
            columns: ["id", "secret", "body"]
                .iter()
                .map(|n| ShapeColumn {
                    name: n.to_string(),
                    toastable: *n != "id",
                })
                .collect(),
            root: None,
        };
        for table in ["docs", "other"] {
            let now = std::time::Instant::now();
            r.shapes_mut()
                .insert("public", table, Some(shape.clone()), now);
        }
        let txn = TxnContext::default();
        let mut out = Vec::new();
        // Both TOASTed columns unchanged: only `body` may be named in `docs`.
        let update = |table| {
            change(
                Kind::Update,
                table,
                vec![col("id", "1")],
                vec![col("id", "1")],
            )
        };
        r.encode_into(&update("docs"), &txn, 0, &mut out).unwrap();
        r.encode_into(&update("other"), &txn, 1, &mut out).unwrap();
        assert_eq!(
            json(&out[0])["unchanged_toast"],
            serde_json::json!(["body"])
        );
        assert_eq!(out[0].partition_key, "public.docs", "the entry's own key");
        assert_eq!(
            json(&out[1])["unchanged_toast"],
            serde_json::json!(["secret", "body"]),
            "another table's columns are its own"
        );
        assert_eq!(
            out[1].partition_key, "public.other|1",
            "the slot's key is back"
        );
    }
}
