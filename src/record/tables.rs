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

use sha2::{Digest, Sha256};

use super::{Record, RecordEncoder, TxnContext, UnkeyedChange};
use crate::config::{MaskMethod, PartitionKey, TableEntry, TablesConfig};
use crate::decode::{Change, ColumnType, Json, Name};

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
    /// The last table resolved and its rule index: a slot's changes come in runs of
    /// one table, and comparing two names costs less than hashing them.
    last: Option<(Name, Name, usize)>,
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
            last: None,
            salt: tables
                .mask_salt
                .as_ref()
                .map(|s| s.0.expose().as_bytes().to_vec())
                .unwrap_or_default(),
        }
    }

    /// The index of the rule for `schema.table`: the first matching entry's.
    fn resolve(&mut self, schema: &str, table: &str) -> usize {
        if let Some((_, _, i)) = self
            .last
            .as_ref()
            .filter(|(s, t, _)| s == schema && t == table)
        {
            return *i;
        }
        let i = self.resolve_uncached(schema, table);
        self.last = Some((schema.into(), table.into(), i));
        i
    }

    fn resolve_uncached(&mut self, schema: &str, table: &str) -> usize {
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
    // Columns edited here no longer match the decoder's tag for them.
    keys.columns_tag = 0;
    shown.columns_tag = 0;
    for (k, s) in [
        (&mut keys.columns, &mut shown.columns),
        (&mut keys.identity, &mut shown.identity),
    ] {
        for column in k.iter_mut() {
            if rule.exclude.iter().any(|x| *x == column.name)
                || rule.masks.iter().any(|(n, _)| *n == column.name)
            {
                column.value = hashed(&column.value, salt);
                column.ty = ColumnType::Other;
            }
        }
        s.retain(|c| !rule.exclude.iter().any(|x| *x == c.name));
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

fn masked(value: &Json, method: MaskMethod, salt: &[u8]) -> Json {
    match method {
        _ if value.get() == "null" => value.clone(),
        MaskMethod::Sha256 => hashed(value, salt),
        MaskMethod::Redact => raw(REDACTED),
    }
}

/// `"<hex sha256(salt ‖ value)>"`, the value being a string's text (unescaped) or
/// any other JSON value's text as printed; `null` stays `null`.
pub fn hashed(value: &Json, salt: &[u8]) -> Json {
    let text = value.get();
    if text == "null" {
        return value.clone();
    }
    let mut h = Sha256::new();
    h.update(salt);
    match serde_json::from_str::<String>(text) {
        Ok(s) => h.update(s.as_bytes()),
        Err(_) => h.update(text.as_bytes()),
    }
    raw(&format!("\"{}\"", hex::encode(h.finalize())))
}

fn raw(json: &str) -> Json {
    // Hex digits and `***` in quotes are always valid JSON.
    Json::printed(json)
}

#[cfg(test)]
mod tests;
