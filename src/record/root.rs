//! Partitioned tables under their root: a change to a leaf partition reported with
//! its top partitioned table's schema and name, so its partition key, its truncate
//! scope and its consumers see one table.
//!
//! Owns the renaming only; which root a leaf has is the shape cache's (read from
//! `pg_inherits` by `pipeline::catalog`). A row moved between partitions (a delete on
//! the old leaf, an insert on the new one) is keyed under the root on both halves,
//! so it keeps its place in its key's order.

use super::shape::{RootRule, ShapeCache};
use super::Record;
use crate::decode::Change;

/// Rename `change` to its root when `rule` says so; returns the leaf's
/// (`schema`, `table`) when it did.
pub fn report_under_root(
    shapes: &ShapeCache,
    rule: &RootRule,
    change: &mut Change,
) -> Option<(String, String)> {
    if !rule.any() {
        return None;
    }
    let (schema, table) = shapes.get(&change.schema, &change.table)?.root.as_ref()?;
    let applies = rule.applies((&change.schema, &change.table), (schema, table));
    if !applies {
        return None;
    }
    let leaf_schema = std::mem::replace(&mut change.schema, schema.as_str().into());
    let leaf_table = std::mem::replace(&mut change.table, table.as_str().into());
    Some((leaf_schema.into(), leaf_table.into()))
}

/// Name the leaf a record reported under its root came from:
/// `"partition": "schema.table"` at the end of the record, so that a consumer can
/// tell which partition a `truncate` emptied.
pub fn mark_partition(record: &mut Record, leaf: &(String, String)) {
    if record.data.last() != Some(&b'}') {
        return;
    }
    record.data.pop();
    record.data.extend_from_slice(b",\"partition\":");
    let name = format!("{}.{}", leaf.0, leaf.1);
    if serde_json::to_writer(&mut record.data, &name).is_err() {
        record.data.extend_from_slice(b"\"\"");
    }
    record.data.push(b'}');
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use crate::config::PartitionKey;
    use crate::decode::{Change, Column, Kind};
    use crate::record::shape::{RootRule, ShapeRules, TableShape};
    use crate::record::{Record, RecordEncoder, TxnContext};

    fn change(kind: Kind, table: &str, id: &str, region: &str) -> Change {
        let cols = vec![
            Column {
                name: "id".into(),
                value: crate::decode::Json::parse(id).unwrap(),
                ty: Default::default(),
            },
            Column {
                name: "region".into(),
                value: crate::decode::Json::parse(&format!("\"{region}\"")).unwrap(),
                ty: Default::default(),
            },
        ];
        let (columns, identity) = match kind {
            Kind::Delete => (vec![], cols),
            _ => (cols, vec![]),
        };
        Change::of_table(kind, table, columns, identity)
    }

    fn encoder(root: bool) -> RecordEncoder {
        let rules = ShapeRules {
            root: RootRule::new(root),
            ..ShapeRules::default()
        };
        let mut enc = RecordEncoder::new("d", PartitionKey::PrimaryKey).with_shape_rules(rules);
        let leaf = TableShape {
            columns: vec![],
            root: Some(("public".into(), "m".into())),
        };
        for t in ["m_eu", "m_us"] {
            enc.shapes_mut()
                .insert("public", t, Some(leaf.clone()), Instant::now());
        }
        enc
    }

    fn encode(enc: &mut RecordEncoder, mut c: Change) -> Record {
        enc.report_under_root(&mut c);
        let mut out = Vec::new();
        enc.encode_into(&c, &TxnContext::default(), 0, &mut out)
            .unwrap();
        out.pop().unwrap()
    }

    #[test]
    fn a_row_moving_between_partitions_keeps_one_table_key_and_scope_under_its_root() {
        let mut enc = encoder(true);
        let delete = encode(&mut enc, change(Kind::Delete, "m_eu", "7", "eu"));
        let insert = encode(&mut enc, change(Kind::Insert, "m_us", "7", "us"));
        assert_eq!(delete.partition_key, "public.m|7");
        assert_eq!(insert.partition_key, delete.partition_key);
        assert_eq!(delete.table, insert.table, "one truncate scope");
        let truncate = encode(&mut enc, change(Kind::Truncate, "m_eu", "7", "eu"));
        assert_eq!(truncate.table, insert.table);
        let v: serde_json::Value = serde_json::from_slice(&insert.data).unwrap();
        assert_eq!(v["table"], "m");
        // Off: the leaf's own name and key.
        let mut enc = encoder(false);
        let insert = encode(&mut enc, change(Kind::Insert, "m_us", "7", "us"));
        assert_eq!(insert.partition_key, "public.m_us|7");
    }

    #[test]
    fn a_table_without_a_root_or_unknown_keeps_its_name() {
        let enc = encoder(true);
        let mut c = change(Kind::Insert, "other", "1", "eu");
        assert_eq!(enc.report_under_root(&mut c), None);
        assert_eq!(c.table, "other");
        let mut c = change(Kind::Insert, "m_eu", "1", "eu");
        assert_eq!(
            enc.report_under_root(&mut c),
            Some(("public".into(), "m_eu".into()))
        );
        assert_eq!(c.table, "m");
    }

    #[test]
    fn a_record_under_its_root_names_its_partition() {
        let mut record = Record::new("k", b"{\"kind\":\"truncate\"}".to_vec());
        super::mark_partition(&mut record, &("public".into(), "m_\"x".into()));
        let v: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        assert_eq!(v["partition"], "public.m_\"x");
        assert_eq!(v["kind"], "truncate");
    }
}
