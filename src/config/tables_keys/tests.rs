//! Unit tests of `tables_keys` and `tables_filters`: `tables:` lists loaded from config
//! text, checked for the entries, the errors and the derived wal2json options.

use super::*;

fn load(tables: &str, extra: &str) -> Result<super::super::Config, ConfigError> {
    let text = format!(
        "replication_slots:\n  - s:\n      host: db\n      user: u\n      db_name: d\n      \
             kns_stream: main\n{extra}      tables:\n{tables}"
    );
    let env = |name: &str| (name == "SALT").then(|| "pepper".to_string());
    super::super::Config::from_text(std::path::Path::new("t.yml"), &text, &env)
}

fn slot(tables: &str, extra: &str) -> super::super::SlotConfig {
    match load(tables, extra) {
        Ok(c) => c.slots.into_iter().next().unwrap(),
        Err(e) => panic!("{e}"),
    }
}

fn option<'a>(s: &'a super::super::SlotConfig, name: &str) -> Option<&'a str> {
    s.options
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn every_entry_key_is_read() {
    let s = slot(
            "        - match: public.orders\n          stream: orders-cdc\n          \
             partition_key: {columns: [tenant]}\n          exclude_columns: [card_number]\n          \
             mask_columns: {email: sha256, name: redact}\n          partition_root: true\n          \
             oversize: s3\n        - match: '*.audit_*'\n          skip: true\n",
            "      mask_salt: ${SALT}\n      oversize_bucket: claims\n",
        );
    let e = &s.tables.entries[0];
    assert_eq!(e.stream.as_deref(), Some("orders-cdc"));
    assert_eq!(
        e.partition_key,
        Some(PartitionKey::Columns(vec!["tenant".into()]))
    );
    assert_eq!(e.exclude_columns, ["card_number"]);
    assert_eq!(
        e.mask_columns,
        [
            ("email".to_string(), MaskMethod::Sha256),
            ("name".to_string(), MaskMethod::Redact)
        ]
    );
    assert_eq!(
        (e.partition_root, e.oversize),
        (Some(true), Some(TableOversize::S3))
    );
    assert!(s.tables.entries[1].skip && s.tables.entries[1].glob.matches("x", "audit_1"));
    assert_eq!(
        s.tables.mask_salt.as_ref().map(|m| m.0.expose()),
        Some("pepper")
    );
    assert!(!format!("{s:?}").contains("pepper"), "the salt is redacted");
    assert_eq!(s.streams(), ["main", "orders-cdc"]);
    // `*.audit_*` is a glob wal2json cannot say: no server-side filter.
    assert_eq!(option(&s, "filter-tables"), None);
}

#[test]
fn an_entry_with_oversize_s3_needs_the_slots_bucket() {
    let e = load("        - match: public.docs\n          oversize: s3\n", "")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.yml:9:21:"), "{e}");
    assert!(e.contains("`oversize_bucket`"), "{e}");
    let s = slot(
        "        - match: public.docs\n          oversize: s3\n",
        "      oversize_bucket: claims\n",
    );
    assert_eq!(s.tables.entries[0].oversize, Some(TableOversize::S3));
}

#[test]
fn without_tables_nothing_changes() {
    let text = "replication_slots:\n  - s:\n      host: db\n      user: u\n      db_name: d\n      kns_stream: main\n";
    let c =
        super::super::Config::from_text(std::path::Path::new("t.yml"), text, &|_| None).unwrap();
    assert_eq!(c.slots[0].tables, TablesConfig::default());
    assert!(c.slots[0].options.is_empty());
    assert_eq!(c.slots[0].streams(), ["main"]);
}

#[test]
fn skips_wal2json_can_say_become_filter_tables_unless_an_earlier_entry_claims_them() {
    let s = slot(
            "        - match: public.orders\n          stream: o\n        - match: public.*\n          \
             skip: true\n        - match: audit.*\n          skip: true\n        - match: 'x.log'\n          \
             skip: true\n",
            "      options: {filter-tables: 'tmp.*'}\n",
        );
    // public.* would also drop public.orders, routed by the entry before it.
    assert_eq!(option(&s, "filter-tables"), Some("tmp.*,audit.*,x.log"));
    assert_eq!(option(&s, "add-tables"), None);
}

#[test]
fn a_final_skip_of_everything_becomes_add_tables() {
    let s = slot(
        "        - match: public.orders\n          stream: o\n        - match: 'sales.*'\n        \
             - match: '*.*'\n          skip: true\n",
        "",
    );
    assert_eq!(option(&s, "add-tables"), Some("public.orders,sales.*"));
    // A glob wal2json cannot say keeps everything decoded; matching drops the rest.
    let s = slot(
        "        - match: public.order_*\n        - match: '*.*'\n          skip: true\n",
        "",
    );
    assert_eq!(option(&s, "add-tables"), None);
}

#[test]
fn quoted_names_with_dots_and_stars_are_legal_when_escaped() {
    let s = slot(
        "        - match: 'my\\.schema.Odd Name'\n          skip: true\n",
        "",
    );
    let g = &s.tables.entries[0].glob;
    assert!(g.matches("my.schema", "Odd Name") && !g.matches("my", "schema"));
    assert_eq!(option(&s, "filter-tables"), Some(r"my\.schema.Odd\ Name"));
}
