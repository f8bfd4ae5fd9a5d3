//! The native record format: the JSON payload of one change as the README documents
//! it (`kind`, `database`, `schema`, `table`, `data`, `old`, LSNs, `seq`), written
//! straight into bytes; the Debezium envelope is handed to [`super::debezium`].

use super::key::table_key;
use super::{debezium, toast, types, RecordEncoder, TxnContext};
use crate::config::RecordFormat;
use crate::decode::{Change, Column, Json, Kind};
use crate::lsn::Lsn;

impl RecordEncoder {
    pub(super) fn payload(
        &mut self,
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
                let marker = serde_json::to_string(&rules.placeholder)
                    .map_or_else(|_| Json::default(), Json::printed);
                filled
                    .columns
                    .extend(left.iter().map(|name| Column::new(*name, marker.clone())));
                let (slot, db, values) = (&self.slot, &self.database, self.values);
                return debezium::payload(&filled, kind, txn, slot, db, values);
            }
            return debezium::payload(change, kind, txn, &self.slot, &self.database, self.values);
        }
        // Sized for the whole record, so that it is written without growing: the
        // fixed fields, and each column's name and value with their punctuation
        // (value options may lengthen a few; the Vec then grows once). A delete
        // writes its identity twice (`data` and `old`); a backfilled row names its
        // table again.
        let identity = columns_len(&change.identity);
        let size = 256
            + self.database.len()
            + 2 * (change.schema.len() + change.table.len())
            + txn.timestamp.as_deref().map_or(0, str::len)
            + columns_len(&change.columns)
            + if kind == Kind::Delete {
                2 * identity
            } else {
                identity
            };
        let mut out = Vec::with_capacity(size);
        out.extend_from_slice(b"{\"kind\":\"");
        out.extend_from_slice(kind.as_str().as_bytes());
        out.push(b'"');
        self.source.push(&mut out, &self.database, change, txn);
        // A DELETE has no new row: its `data` is the old key / identity, so that a
        // consumer always finds the row's key in `data`.
        let data = if kind == Kind::Delete {
            &change.identity
        } else {
            &change.columns
        };
        out.extend_from_slice(b",\"data\":");
        match self.names.of(change).filter(|_| kind != Kind::Delete) {
            Some(keys) => names::push_columns_with(&mut out, data, keys, self.values),
            None => push_columns(&mut out, data, self.values),
        }
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
                push_json_str(&mut out, &table_key(change, 0));
                out.extend_from_slice(b",\"chunk\":");
                out.extend_from_slice(itoa::Buffer::new().format(chunk).as_bytes());
                out.push(b'}');
            }
        }
        out.push(b'}');
        out
    }
}

/// The keys of `data` written once per set of columns.
pub(super) mod names;
/// `database`, `schema`, `table` and `timestamp` written once per table and transaction.
pub(super) mod source;

/// What a record says besides the change itself.
#[derive(Clone, Copy)]
pub(super) enum Extra {
    None,
    /// One half of an update that changed the key: `"key_change": true`.
    KeyChange,
    /// A backfilled row: `"snapshot": {"table": "schema.table", "chunk": n}`.
    Snapshot(u64),
}

/// The bytes `columns` take as a JSON object (names and values as they are, and
/// their punctuation): what a record reserves for them.
pub(super) fn columns_len(columns: &[Column]) -> usize {
    columns
        .iter()
        .map(|c| c.name.len() + c.value.get().len() + 4)
        .sum()
}

pub(super) fn push_columns(out: &mut Vec<u8>, columns: &[Column], values: types::ValueOptions) {
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

pub(super) fn push_opt_lsn(out: &mut Vec<u8>, lsn: Option<Lsn>) {
    match lsn {
        Some(lsn) => lsn.write_quoted_to(out),
        None => out.extend_from_slice(b"null"),
    }
}

pub(super) fn push_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => push_json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

pub(crate) fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Names, schemas and timestamps rarely hold a byte JSON escapes: copy those as
    // they are, and leave the rest to serde_json.
    if !crate::decode::bytes::needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a &str into a Vec cannot fail; fall back to an empty string rather
    // than panic if serde_json ever says otherwise.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    proptest! {
        /// The copy without escapes writes what serde_json writes, for any text.
        #[test]
        fn push_json_str_writes_what_serde_json_writes(s in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}])*") {
            let mut out = Vec::new();
            super::push_json_str(&mut out, &s);
            prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }
}
