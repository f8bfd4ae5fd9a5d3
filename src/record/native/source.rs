//! The fields a table's records and a transaction's records repeat (`database`,
//! `schema`, `table`; `timestamp`), written as JSON once and copied after.
//!
//! Each was checked for bytes JSON escapes on every record. The last table and the
//! last timestamp are kept with their text as written; a record whose strings are
//! equal to them copies it. Equal strings write equal JSON, so what a record says
//! does not depend on what came before it.

use super::{push_json_str, push_opt_str};
use crate::decode::{Change, Name};
use crate::record::TxnContext;

/// The last table's and the last transaction's fields as written.
#[derive(Debug, Clone, Default)]
pub(in crate::record) struct SourceFields {
    /// `database`, `schema` and `table` of `table_text`, once one is written.
    table: Option<(String, Name, Name)>,
    /// `"database":…,"schema":…,"table":…`
    table_text: Vec<u8>,
    /// The `timestamp` of `timestamp_text`, once one is written.
    timestamp: Option<Option<String>>,
    /// `"timestamp":…`
    timestamp_text: Vec<u8>,
}

impl SourceFields {
    /// `,"database":…,"schema":…,"table":…,"timestamp":…` for `change` in `txn`.
    pub(in crate::record) fn push(
        &mut self,
        out: &mut Vec<u8>,
        database: &str,
        change: &Change,
        txn: &TxnContext,
    ) {
        let same_table = self
            .table
            .as_ref()
            .is_some_and(|(d, s, t)| *s == change.schema && *t == change.table && d == database);
        if !same_table {
            self.table_text.clear();
            push_table(&mut self.table_text, database, change);
            // The buffers are reused: a run of tables or of one-row transactions
            // allocates nothing here after the first.
            match &mut self.table {
                Some((d, s, t)) => {
                    d.clear();
                    d.push_str(database);
                    s.clone_from(&change.schema);
                    t.clone_from(&change.table);
                }
                None => {
                    self.table = Some((
                        database.to_owned(),
                        change.schema.clone(),
                        change.table.clone(),
                    ))
                }
            }
        }
        if self.timestamp.as_ref() != Some(&txn.timestamp) {
            self.timestamp_text.clear();
            push_timestamp(&mut self.timestamp_text, txn.timestamp.as_deref());
            match &mut self.timestamp {
                Some(last) => last.clone_from(&txn.timestamp),
                None => self.timestamp = Some(txn.timestamp.clone()),
            }
        }
        out.push(b',');
        out.extend_from_slice(&self.table_text);
        out.push(b',');
        out.extend_from_slice(&self.timestamp_text);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Kind;
    use proptest::prelude::*;

    fn change(schema: &str, table: &str) -> Change {
        let mut change = Change::of_table(Kind::Insert, table, Vec::new(), Vec::new());
        change.schema = schema.into();
        change
    }

    /// The same fields written without the memo.
    fn fresh(database: &str, change: &Change, timestamp: Option<&str>) -> String {
        let mut out = vec![b','];
        push_table(&mut out, database, change);
        out.push(b',');
        push_timestamp(&mut out, timestamp);
        String::from_utf8(out).unwrap()
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
            let mut fields = SourceFields::default();
            for (d, s, t, ts) in steps {
                let change = change(names[s], names[t]);
                let txn = TxnContext {
                    timestamp: ts.map(|i| stamps[i].to_owned()),
                    ..TxnContext::default()
                };
                let mut memo = Vec::new();
                fields.push(&mut memo, databases[d], &change, &txn);
                let want = fresh(databases[d], &change, txn.timestamp.as_deref());
                prop_assert_eq!(String::from_utf8(memo).unwrap(), want);
            }
        }
    }

    #[test]
    fn writes_the_fields_as_json() {
        let mut fields = SourceFields::default();
        let txn = TxnContext {
            timestamp: Some("t\"s".into()),
            ..TxnContext::default()
        };
        let mut out = Vec::new();
        fields.push(&mut out, "db", &change("s", "t"), &txn);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#","database":"db","schema":"s","table":"t","timestamp":"t\"s""#
        );
    }
}
