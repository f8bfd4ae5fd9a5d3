//! Unit tests of the shape cache: when a table is looked up again, the bound, the
//! per-table partition-root rule.

use super::*;
use crate::decode::Column;

fn col(name: &str) -> Column {
    Column {
        name: name.into(),
        value: crate::decode::Json::parse("1").unwrap(),
        ty: Default::default(),
    }
}

fn change(kind: Kind, names: &[&str]) -> Change {
    Change::of_table(kind, "docs", names.iter().map(|n| col(n)).collect(), vec![])
}

fn shape() -> TableShape {
    TableShape {
        columns: vec![
            ShapeColumn {
                name: "id".into(),
                toastable: false,
            },
            ShapeColumn {
                name: "body".into(),
                toastable: true,
            },
        ],
        root: None,
    }
}

#[test]
fn a_shape_is_looked_up_when_unknown_stale_or_at_odds_with_a_change() {
    let t0 = Instant::now();
    let mut cache = ShapeCache::default();
    let upd = change(Kind::Update, &["id"]);
    assert!(cache.needs_lookup(("public", "docs"), &upd, true, t0));
    cache.insert("public", "docs", Some(shape()), t0);
    let soon = t0 + Duration::from_secs(2);
    // Leaving out a TOASTable column is what unchanged TOAST looks like.
    assert!(!cache.needs_lookup(("public", "docs"), &upd, true, soon));
    // A column the shape lacks: added since the lookup.
    let added = change(Kind::Update, &["id", "body", "extra"]);
    assert!(cache.needs_lookup(("public", "docs"), &added, true, soon));
    // Not within MIN_RELOOKUP of the last lookup.
    assert!(!cache.needs_lookup(("public", "docs"), &added, true, t0));
    // An insert prints every column: one missing was dropped.
    let ins = change(Kind::Insert, &["id"]);
    assert!(cache.needs_lookup(("public", "docs"), &ins, true, soon));
    // A fixed-width column cannot be TOASTed: left out means dropped.
    let no_id = change(Kind::Update, &["body"]);
    assert!(cache.needs_lookup(("public", "docs"), &no_id, true, soon));
    // A left-out TOASTable column is checked again now and then.
    let later = t0 + REVERIFY_LEFT_OUT + Duration::from_secs(1);
    assert!(cache.needs_lookup(("public", "docs"), &upd, true, later));
    let full = change(Kind::Update, &["id", "body"]);
    assert!(!cache.needs_lookup(("public", "docs"), &full, true, later));
    // Without TOAST handling only the TTL matters.
    assert!(!cache.needs_lookup(("public", "docs"), &added, false, soon));
    assert!(cache.needs_lookup(("public", "docs"), &full, false, t0 + SHAPE_TTL * 2));
    // A table the catalog lacks is not asked about again until the TTL.
    cache.insert("public", "gone", None, t0);
    assert!(!cache.needs_lookup(("public", "gone"), &added, true, soon));
}

#[test]
fn a_tag_that_matched_the_shape_skips_the_comparison_until_the_shape_changes() {
    let t0 = Instant::now();
    let soon = t0 + Duration::from_secs(2);
    let mut cache = ShapeCache::default();
    cache.insert("public", "docs", Some(shape()), t0);
    let tagged = |kind, names: &[&str], tag| Change {
        columns_tag: tag,
        ..change(kind, names)
    };
    // Matches the shape: the tag is remembered.
    assert!(!cache.needs_lookup(
        ("public", "docs"),
        &tagged(Kind::Insert, &["id", "body"], 7),
        true,
        soon
    ));
    // The decoder gives one tag to one set of columns only; a change that claims
    // the tag is taken at its word (this one would otherwise be looked up).
    let claims = tagged(Kind::Insert, &["id", "body", "extra"], 7);
    assert!(!cache.needs_lookup(("public", "docs"), &claims, true, soon));
    // Another tag, or none, is compared.
    assert!(cache.needs_lookup(
        ("public", "docs"),
        &tagged(Kind::Insert, &["id", "body", "extra"], 8),
        true,
        soon
    ));
    assert!(cache.needs_lookup(
        ("public", "docs"),
        &tagged(Kind::Insert, &["id", "body", "extra"], 0),
        true,
        soon
    ));
    // A change that left a column out is not remembered.
    assert!(!cache.needs_lookup(
        ("public", "docs"),
        &tagged(Kind::Update, &["id"], 9),
        true,
        soon
    ));
    assert!(cache.needs_lookup(
        ("public", "docs"),
        &tagged(Kind::Insert, &["id"], 9),
        true,
        soon
    ));
    // A new shape forgets the tag.
    cache.insert("public", "docs", Some(shape()), t0);
    assert!(cache.needs_lookup(("public", "docs"), &claims, true, soon));
}

#[test]
fn the_cache_keeps_at_most_its_bound_dropping_the_least_recently_used() {
    let t0 = Instant::now();
    let mut cache = ShapeCache::default();
    for i in 0..MAX_CACHED_TABLES {
        cache.insert("s", &format!("t{i}"), Some(shape()), t0);
    }
    // A change of t0 that needs no lookup marks it as used.
    assert!(!cache.needs_lookup(("s", "t0"), &change(Kind::Delete, &[]), true, t0));
    cache.insert("s", "new", Some(shape()), t0);
    assert_eq!(cache.len(), MAX_CACHED_TABLES);
    assert!(cache.get("s", "t0").is_some(), "recently used stays");
    assert!(cache.get("s", "t1").is_none(), "least recently used goes");
    assert!(cache.get("s", "new").is_some());
}

#[test]
fn a_per_table_rule_overrides_the_slot_default() {
    let rule = RootRule::new(false)
        .with_per_table(|_leaf, root| (root == ("public", "m")).then_some(true));
    assert!(rule.applies(("public", "m_1"), ("public", "m")));
    assert!(!rule.applies(("public", "n_1"), ("public", "n")));
    assert!(RootRule::new(true).applies(("public", "n_1"), ("public", "n")));
    assert!(rule.any());
    assert!(!RootRule::new(false).any());
}

#[test]
fn the_last_match_answers_for_its_table_and_tag_only_and_keeps_the_table_in_use() {
    let t0 = Instant::now();
    let soon = t0 + Duration::from_secs(2);
    let mut cache = ShapeCache::default();
    let name = |i: usize| format!("t{i}");
    for i in 0..MAX_CACHED_TABLES {
        cache.insert("public", &name(i), Some(shape()), t0);
    }
    let tagged = Change {
        columns_tag: 3,
        ..change(Kind::Insert, &["id", "body"])
    };
    // t0's columns match its shape: remembered. Then every other table is used
    // after it, and t0 again, answered from what was remembered.
    assert!(!cache.needs_lookup(("public", "t0"), &tagged, true, soon));
    let delete = change(Kind::Delete, &["id"]);
    for i in 1..MAX_CACHED_TABLES {
        assert!(!cache.needs_lookup(("public", &name(i)), &delete, true, soon));
    }
    assert!(!cache.needs_lookup(("public", "t0"), &tagged, true, soon));
    // So a new table evicts the least recently used, t1, not t0.
    cache.insert("public", "new", Some(shape()), soon);
    assert!(cache.get("public", "t0").is_some());
    assert!(cache.get("public", "t1").is_none());
    // Remembered again; the same tag of another table, or of t0 under another
    // schema, is not answered from it; nor t0 once its shape is SHAPE_TTL old.
    assert!(!cache.needs_lookup(("public", "t0"), &tagged, true, soon));
    assert!(cache.needs_lookup(("public", "t1"), &tagged, true, soon));
    assert!(cache.needs_lookup(("other", "t0"), &tagged, true, soon));
    let stale = t0 + SHAPE_TTL + Duration::from_secs(1);
    assert!(cache.needs_lookup(("public", "t0"), &tagged, true, stale));
}
