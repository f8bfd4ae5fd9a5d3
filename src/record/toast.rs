//! Unchanged TOAST made explicit: the columns an update's new row lacks because
//! their out-of-line value did not change, named (`list`) or given a marker value
//! (`placeholder`).
//!
//! Owns which columns count as left out (a TOASTable column of the table's catalog
//! shape, absent from the new row wal2json printed) and how the record says so. It
//! never invents a value: a placeholder is a marker, never the old value.

use super::native::push_json_str;
use super::shape::TableShape;
use crate::config::UnchangedToast;
use crate::decode::Change;

/// The TOASTable columns of `shape` that `change`'s new row lacks, in catalog order.
///
/// wal2json prints a row in `attnum` order, so one walk usually matches both lists;
/// a partition reported under its root may order its columns differently, and then
/// each column is looked for.
pub fn left_out<'s>(shape: &'s TableShape, change: &Change) -> Vec<&'s str> {
    let printed = &change.columns;
    let mut out = Vec::new();
    let mut next = 0;
    for column in &shape.columns {
        let present = match printed.get(next) {
            Some(c) if c.name == column.name => {
                next += 1;
                true
            }
            _ => printed.iter().any(|c| c.name == column.name),
        };
        if !present && column.toastable {
            out.push(column.name.as_str());
        }
    }
    out
}

/// Amend the record's `data` object, just written at the end of `out`, for the
/// columns `left` names: under `list` a `"unchanged_toast"` array follows `data`
/// (only when a column was left out), under `placeholder` each column joins `data`
/// with the marker as its value.
pub fn amend_data(out: &mut Vec<u8>, left: &[&str], mode: UnchangedToast, placeholder: &str) {
    if left.is_empty() {
        return;
    }
    match mode {
        UnchangedToast::Omit => {}
        UnchangedToast::List => {
            out.extend_from_slice(b",\"unchanged_toast\":[");
            for (i, name) in left.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(out, name);
            }
            out.push(b']');
        }
        UnchangedToast::Placeholder => {
            if out.last() != Some(&b'}') {
                return;
            }
            out.pop();
            for name in left {
                if out.last() != Some(&b'{') {
                    out.push(b',');
                }
                push_json_str(out, name);
                out.push(b':');
                push_json_str(out, placeholder);
            }
            out.push(b'}');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Column, Kind};
    use crate::record::shape::ShapeColumn;

    fn shape(cols: &[(&str, bool)]) -> TableShape {
        TableShape {
            columns: cols
                .iter()
                .map(|(n, t)| ShapeColumn {
                    name: (*n).into(),
                    toastable: *t,
                })
                .collect(),
            root: None,
        }
    }

    fn update(names: &[&str]) -> Change {
        Change {
            kind: Kind::Update,
            schema: "public".into(),
            table: "docs".into(),
            columns: names
                .iter()
                .map(|n| Column {
                    name: (*n).into(),
                    value: crate::decode::Json::parse("1").unwrap(),
                    ty: Default::default(),
                })
                .collect(),
            identity: vec![],
            pk: Default::default(),
            lsn: None,
            columns_tag: 0,
        }
    }

    #[test]
    fn only_toastable_columns_missing_from_the_new_row_are_left_out() {
        let s = shape(&[("id", false), ("a", true), ("n", false), ("b", true)]);
        assert_eq!(left_out(&s, &update(&["id", "n"])), ["a", "b"]);
        assert_eq!(
            left_out(&s, &update(&["id", "a", "n", "b"])),
            Vec::<&str>::new()
        );
        // A fixed-width column is never unchanged TOAST, even when absent.
        assert_eq!(left_out(&s, &update(&["a", "b"])), Vec::<&str>::new());
        // Another column order (a partition under its root) finds the same.
        assert_eq!(left_out(&s, &update(&["n", "b", "id"])), ["a"]);
    }

    fn encoder(mode: UnchangedToast) -> crate::record::RecordEncoder {
        use crate::record::shape::ShapeRules;
        let rules = ShapeRules {
            unchanged_toast: mode,
            placeholder: "__u".into(),
            root: Default::default(),
        };
        let mut enc =
            crate::record::RecordEncoder::new("d", crate::config::PartitionKey::PrimaryKey)
                .with_shape_rules(rules);
        enc.shapes_mut().insert(
            "public",
            "docs",
            Some(shape(&[("id", false), ("big", true), ("v", true)])),
            std::time::Instant::now(),
        );
        enc
    }

    fn records(enc: &mut crate::record::RecordEncoder, c: &Change) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        enc.encode_into(c, &Default::default(), 0, &mut out)
            .unwrap();
        out.iter()
            .map(|r| serde_json::from_slice(&r.data).unwrap())
            .collect()
    }

    fn with_identity(mut c: Change, id: &str) -> Change {
        c.identity = vec![Column {
            name: "id".into(),
            value: crate::decode::Json::parse(id).unwrap(),
            ty: Default::default(),
        }];
        c.pk = ["id".to_string()].into();
        c
    }

    #[test]
    fn an_update_says_which_toasted_columns_it_left_out_in_each_mode() {
        let c = with_identity(update(&["id", "v"]), "1");
        let v = records(&mut encoder(UnchangedToast::List), &c);
        assert_eq!(v[0]["unchanged_toast"], serde_json::json!(["big"]));
        assert_eq!(v[0]["data"], serde_json::json!({"id": 1, "v": 1}));
        let v = records(&mut encoder(UnchangedToast::Placeholder), &c);
        assert!(v[0].get("unchanged_toast").is_none());
        assert_eq!(
            v[0]["data"],
            serde_json::json!({"id": 1, "v": 1, "big": "__u"})
        );
        let v = records(&mut encoder(UnchangedToast::Omit), &c);
        assert!(v[0].get("unchanged_toast").is_none());
        assert_eq!(v[0]["data"], serde_json::json!({"id": 1, "v": 1}));
        // Nothing left out: no field at all.
        let full = with_identity(update(&["id", "big", "v"]), "1");
        let v = records(&mut encoder(UnchangedToast::List), &full);
        assert!(v[0].get("unchanged_toast").is_none(), "{}", v[0]);
    }

    #[test]
    fn the_insert_half_of_a_key_change_says_so_too_and_the_delete_half_does_not() {
        // The key moved from 1 to 2; `big` was not printed.
        let c = with_identity(update(&["id", "v"]), "2");
        let mut c = c;
        c.columns[0].value = crate::decode::Json::parse("3").unwrap();
        let v = records(&mut encoder(UnchangedToast::List), &c);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0]["kind"], "delete");
        assert!(v[0].get("unchanged_toast").is_none());
        assert_eq!(v[1]["kind"], "insert");
        assert_eq!(v[1]["unchanged_toast"], serde_json::json!(["big"]));
        let v = records(&mut encoder(UnchangedToast::Placeholder), &c);
        assert_eq!(v[1]["data"]["big"], "__u");
        assert!(v[0]["data"].get("big").is_none());
    }

    #[test]
    fn list_follows_data_and_placeholder_joins_it() {
        let mut out = b"{\"data\":{\"id\":1}".to_vec();
        amend_data(&mut out, &["a", "b"], UnchangedToast::List, "x");
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["unchanged_toast"], serde_json::json!(["a", "b"]));

        let mut out = b"{\"data\":{\"id\":1}".to_vec();
        amend_data(&mut out, &["a"], UnchangedToast::Placeholder, "__u");
        out.push(b'}');
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["data"], serde_json::json!({"id": 1, "a": "__u"}));

        let mut out = b"{\"data\":{}".to_vec();
        amend_data(&mut out, &["a"], UnchangedToast::Placeholder, "__u");
        assert_eq!(out, b"{\"data\":{\"a\":\"__u\"}");

        let mut out = b"{\"data\":{}".to_vec();
        amend_data(&mut out, &[], UnchangedToast::List, "__u");
        amend_data(&mut out, &["a"], UnchangedToast::Omit, "__u");
        assert_eq!(out, b"{\"data\":{}");
    }
}
