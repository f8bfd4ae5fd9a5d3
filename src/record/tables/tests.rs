//! Unit tests of the `tables:` rules: the first matching entry wins, excluded and masked
//! columns in every record, skipped reads, and the table list written for wal2json.

use super::*;
use crate::config::{PartitionKey, TableGlob};
use crate::decode::{Column, Kind};

fn col(name: &str, raw: &str) -> Column {
    Column::new(name, crate::decode::Json::parse(raw).unwrap())
}

fn change(kind: Kind, table: &str, columns: Vec<Column>, identity: Vec<Column>) -> Change {
    Change::of_table(kind, table, columns, identity)
}

fn entry(glob: &str) -> TableEntry {
    TableEntry::matching(TableGlob::parse(glob).unwrap())
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

proptest::proptest! {
    /// Any run of tables (schema and table names that differ in one place only)
    /// resolves to the rule a fresh lookup finds: the last table kept is never taken
    /// for another.
    #[test]
    fn the_last_table_kept_resolves_as_a_fresh_lookup(
        steps in proptest::collection::vec((0usize..3, 0usize..4), 1..30),
    ) {
        let mut orders = entry("public.orders");
        orders.stream = Some("orders-cdc".into());
        let mut audit = entry("public.audit_*");
        audit.skip = true;
        let mut r = router(vec![orders, audit, entry("sales.*")], None);
        let schemas = ["public", "sales", "publid"];
        let tables = ["orders", "audit_x", "order", "other"];
        for (s, t) in steps {
            let (schema, table) = (schemas[s], tables[t]);
            let fresh = r.globs.iter().position(|g| g.matches(schema, table)).unwrap_or(r.globs.len());
            proptest::prop_assert_eq!(r.resolve(schema, table), fresh, "{}.{}", schema, table);
        }
    }
}
