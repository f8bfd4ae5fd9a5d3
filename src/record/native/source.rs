//! The fields a table's records and a transaction's records repeat (`database`,
//! `schema`, `table`; `timestamp`), written as JSON once and copied after.
//!
//! Each was checked for bytes JSON escapes on every record. The last table and the
//! last timestamp are kept with their text as written; a record whose strings are
//! equal to them copies it. Equal strings write equal JSON, so what a record says
//! does not depend on what came before it.

use std::cell::RefCell;

use super::{push_json_str, push_opt_str};
use crate::decode::{Change, Name};
use crate::record::TxnContext;

/// The last table's and the last transaction's fields as written.
#[derive(Debug, Clone, Default)]
pub(in crate::record) struct Written(RefCell<Last>);

#[derive(Debug, Clone, Default)]
struct Last {
    /// `database`, `schema` and `table` of `text`.
    table: Option<(String, Name, Name)>,
    /// `"database":…,"schema":…,"table":…`
    text: Vec<u8>,
    /// The `timestamp` of `timestamp_text`.
    timestamp: Option<Option<String>>,
    /// `"timestamp":…`
    timestamp_text: Vec<u8>,
}

impl Written {
    /// `,"database":…,"schema":…,"table":…,"timestamp":…` for `change` in `txn`.
    pub(in crate::record) fn push_source(
        &self,
        out: &mut Vec<u8>,
        database: &str,
        change: &Change,
        txn: &TxnContext,
    ) {
        let Ok(mut last) = self.0.try_borrow_mut() else {
            // Not reached (nothing here calls back in); written afresh if it were.
            return push_fresh(out, database, change, txn.timestamp.as_deref());
        };
        let last = &mut *last;
        let same_table = last
            .table
            .as_ref()
            .is_some_and(|(d, s, t)| *s == change.schema && *t == change.table && d == database);
        if !same_table {
            last.text.clear();
            push_table(&mut last.text, database, change);
            last.table = Some((
                database.to_owned(),
                change.schema.clone(),
                change.table.clone(),
            ));
        }
        if last.timestamp.as_ref() != Some(&txn.timestamp) {
            last.timestamp_text.clear();
            push_timestamp(&mut last.timestamp_text, txn.timestamp.as_deref());
            last.timestamp = Some(txn.timestamp.clone());
        }
        out.push(b',');
        out.extend_from_slice(&last.text);
        out.push(b',');
        out.extend_from_slice(&last.timestamp_text);
    }
}

fn push_table(out: &mut Vec<u8>, database: &str, change: &Change) {
    out.extend_from_slice(b"\"database\":");
    push_json_str(out, database);
    out.extend_from_slice(b",\"schema\":");
    push_json_str(out, &change.schema);
    out.extend_from_slice(b",\"table\":");
    push_json_str(out, &change.table);
}

fn push_timestamp(out: &mut Vec<u8>, timestamp: Option<&str>) {
    out.extend_from_slice(b"\"timestamp\":");
    push_opt_str(out, timestamp);
}

/// The same fields written without the memo.
fn push_fresh(out: &mut Vec<u8>, database: &str, change: &Change, timestamp: Option<&str>) {
    out.push(b',');
    push_table(out, database, change);
    out.push(b',');
    push_timestamp(out, timestamp);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn change(schema: &str, table: &str) -> Change {
        Change {
            kind: crate::decode::Kind::Insert,
            schema: schema.into(),
            table: table.into(),
            columns: Vec::new(),
            identity: Vec::new(),
            pk: Vec::new().into(),
            lsn: None,
            columns_tag: 0,
        }
    }

    proptest! {
        /// Any sequence of tables and timestamps (with the bytes JSON escapes, and
        /// names that differ in one place only) writes what writing afresh writes.
        #[test]
        fn writes_what_writing_afresh_writes(
            steps in proptest::collection::vec(
                (0usize..3, 0usize..3, 0usize..3, proptest::option::of(0usize..3)),
                1..40,
            ),
        ) {
            let names = ["public", "pub\"lic", "publid"];
            let databases = ["db", "d\\b", "postgres"];
            let stamps = ["2026-12-01 07:00:00+00", "2026-12-01 07:00:01+00", "x\u{1}y"];
            let written = Written::default();
            for (d, s, t, ts) in steps {
                let change = change(names[s], names[t]);
                let txn = TxnContext {
                    timestamp: ts.map(|i| stamps[i].to_owned()),
                    ..TxnContext::default()
                };
                let mut memo = Vec::new();
                written.push_source(&mut memo, databases[d], &change, &txn);
                let mut fresh = Vec::new();
                push_fresh(&mut fresh, databases[d], &change, txn.timestamp.as_deref());
                prop_assert_eq!(String::from_utf8(memo).unwrap(), String::from_utf8(fresh).unwrap());
            }
        }
    }

    #[test]
    fn writes_the_fields_as_json() {
        let written = Written::default();
        let txn = TxnContext {
            timestamp: Some("t\"s".into()),
            ..TxnContext::default()
        };
        let mut out = Vec::new();
        written.push_source(&mut out, "db", &change("s", "t"), &txn);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#","database":"db","schema":"s","table":"t","timestamp":"t\"s""#
        );
    }
}
