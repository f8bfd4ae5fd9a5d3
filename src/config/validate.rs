//! Shape and key-name checks on the located YAML tree.
//!
//! Owns the lists of known keys, slot-name rules, duplicate-slot detection and the
//! wal2json option-name check, so that a typo is reported with its line:column and
//! the closest known key (`suggest`). It never converts values (that is `slot` and
//! `value`) and never reads the environment.

use serde_saphyr::{Location, Spanned};

use super::suggest::closest;
use super::yaml::{Entry, Node};
use super::{ConfigError, Source, PG_MAX_SLOT_NAME_LEN, WAL2JSON_OPTIONS};

/// Keys allowed at the top level of the file.
const TOP_LEVEL_KEYS: &[&str] = &[
    "databases",
    "replication_slots",
    "shutdown_timeout_secs",
    "stopped_slot_retry_secs",
    "metrics_namespace",
    "metrics_interval_secs",
    "metrics_emf",
    "http_listen",
    "ready_retry_budget_secs",
    "wal_lag_warn_bytes",
    "memory_budget_bytes",
];

/// Keys allowed in a slot (the fields of `file::SlotFile`), and so in a `databases`
/// entry, whose keys a slot takes over with `<<:` (the original tool allowed any).
pub(super) const SLOT_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "db_name",
    "options",
    "kns_stream",
    "region",
    "partition_key",
    "batch_max_records",
    "batch_max_bytes",
    "max_record_bytes",
    "max_in_flight",
    "linger_ms",
    "queue_capacity",
    "status_interval_secs",
    "create_slot",
    "sslmode",
    "sslrootcert",
    "secret",
    "iam_auth",
    "hostaddr",
    "channel_binding",
    "require_auth",
    "iam_token_to_unverified_server",
    "checkpoint",
    "checkpoint_parameter",
    "checkpoint_interval_secs",
    "accept_checkpoint_gap",
    "heartbeat_interval_secs",
    "aggregation",
    "wire_format",
    "shard_records_per_sec",
    "shard_bytes_per_sec",
    "snapshot",
    "snapshot_chunk_rows",
    "snapshot_max_rows_per_sec",
    "oversize",
    "oversize_bucket",
    "oversize_prefix",
    "tables",
    "mask_salt",
    "record_format",
    "numeric_as_string",
    "json_as_object",
    "timestamps",
    "unchanged_toast",
    "unchanged_toast_placeholder",
    "partition_root",
];

/// A slot that passed the shape checks: its name and where the name is written.
#[derive(Debug)]
pub(super) struct SlotSite {
    pub name: String,
    pub at: Location,
}

/// Checks the whole tree; returns the slots in file order.
pub(super) fn check_tree(
    src: &Source<'_>,
    root: Option<&Spanned<Node>>,
) -> Result<Vec<SlotSite>, ConfigError> {
    let Some(root) = root else {
        return Err(src.error(
            None,
            "the file is empty; it needs a `replication_slots:` list with at least one slot \
             (see configs.yml in the repository for an example)",
        ));
    };
    let Node::Map(entries) = &root.value else {
        return Err(src.at(
            root,
            format!(
                "the top level must be a mapping with a `replication_slots:` key, not {}",
                root.value.kind()
            ),
        ));
    };
    let mut slots_node = None;
    for (key, value) in entries {
        let name = key_text(src, key, "at the top level")?;
        check_known(src, key, &name, TOP_LEVEL_KEYS, "at the top level")?;
        match name.as_str() {
            "databases" => check_databases(src, value)?,
            "replication_slots" => slots_node = Some(value),
            _ => {}
        }
    }
    let Some(slots) = slots_node else {
        return Err(src.error(
            None,
            "missing `replication_slots:`; add a list of slots, e.g.\n  replication_slots:\n    \
             - my_slot:\n        <<: *my_db\n        kns_stream: my-stream",
        ));
    };
    check_slots(src, slots)
}

fn check_databases(src: &Source<'_>, node: &Spanned<Node>) -> Result<(), ConfigError> {
    let items = match &node.value {
        Node::Null => return Ok(()),
        Node::Seq(items) => items,
        other => {
            return Err(src.at(
                node,
                format!(
                "`databases` must be a list of `- name: {{host: ..., user: ..., db_name: ...}}` \
                     entries, not {}",
                other.kind()
            ),
            ))
        }
    };
    for item in items {
        let (name, body) = one_key_item(src, item, "`databases`", "- my_database: &my_db")?;
        let place = format!("in database `{name}`");
        let fields = map_entries(src, body, &place)?;
        for (key, _) in fields {
            let key_name = key_text(src, key, &place)?;
            check_known(src, key, &key_name, SLOT_KEYS, &place)?;
        }
    }
    Ok(())
}

fn check_slots(src: &Source<'_>, node: &Spanned<Node>) -> Result<Vec<SlotSite>, ConfigError> {
    let items = match &node.value {
        Node::Seq(items) if !items.is_empty() => items,
        Node::Null | Node::Seq(_) => {
            return Err(src.at(
                node,
                "`replication_slots` is empty; list at least one slot (`- my_slot: {...}`)",
            ))
        }
        other => {
            return Err(src.at(
                node,
                format!(
                    "`replication_slots` must be a list of `- slot_name: {{...}}` entries, not {}",
                    other.kind()
                ),
            ))
        }
    };
    let mut sites: Vec<SlotSite> = Vec::with_capacity(items.len());
    for item in items {
        let (name, body) = one_key_item(src, item, "`replication_slots`", "- my_slot:")?;
        let name_at = match &item.value {
            Node::Map(entries) => entries.first().map(|(k, _)| k),
            _ => None,
        };
        let at = name_at.map_or(item.referenced, |k| k.referenced);
        check_slot_name(src, &at, &name)?;
        if let Some(first) = sites.iter().find(|s| s.name == name) {
            return Err(src.error(
                Some(&at),
                format!(
                    "duplicate replication slot `{name}` (first defined at line {}); each slot \
                     may be listed once, rename one of them",
                    first.at.line()
                ),
            ));
        }
        let place = format!("in replication slot `{name}`");
        for (key, value) in map_entries(src, body, &place)? {
            let key_name = key_text(src, key, &place)?;
            check_known(src, key, &key_name, SLOT_KEYS, &place)?;
            if key_name == "options" {
                check_options(src, value, &name)?;
            }
        }
        sites.push(SlotSite { name, at });
    }
    Ok(sites)
}

/// PostgreSQL's rule (ReplicationSlotValidateName): lower-case letters, digits and
/// underscore, 1..=63 characters.
fn check_slot_name(src: &Source<'_>, at: &Location, name: &str) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name.len() <= PG_MAX_SLOT_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid {
        return Ok(());
    }
    let suggestion: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(PG_MAX_SLOT_NAME_LEN)
        .collect();
    Err(src.error(
        Some(at),
        format!(
            "invalid replication slot name `{name}`: PostgreSQL slot names may contain only \
             lower-case letters, digits and `_`, at most {PG_MAX_SLOT_NAME_LEN} characters \
             (try `{suggestion}`)"
        ),
    ))
}

fn check_options(src: &Source<'_>, node: &Spanned<Node>, slot: &str) -> Result<(), ConfigError> {
    let place = format!("in replication slot `{slot}`, key `options`");
    for (key, value) in map_entries(src, node, &place)? {
        let name = key_text(src, key, &place)?;
        if !WAL2JSON_OPTIONS.contains(&name.as_str()) {
            let hint = match name.as_str() {
                // wal2json 2.6's; the slot key does the same with 2.5.
                "numeric-data-types-as-string" => {
                    "use the slot key `numeric_as_string: true` instead; ".to_string()
                }
                _ => closest(&name, WAL2JSON_OPTIONS)
                    .map(|c| format!("did you mean `{c}`? "))
                    .unwrap_or_default(),
            };
            return Err(src.at(
                key,
                format!(
                    "{place}: `{name}` is not a wal2json 2.5 option; {hint}known options: {}",
                    WAL2JSON_OPTIONS.join(", ")
                ),
            ));
        }
        if value.value.scalar_text().is_none() {
            return Err(src.at(
                value,
                format!(
                    "{place}: option `{name}` needs a boolean, number or text value, not {}",
                    value.value.kind()
                ),
            ));
        }
        // `format-version`'s value is checked after `${ENV}` expansion, in `slot`.
    }
    Ok(())
}

/// A list item that must be a one-key map `- name: {...}`; returns the name and body.
fn one_key_item<'n>(
    src: &Source<'_>,
    item: &'n Spanned<Node>,
    list: &str,
    example: &str,
) -> Result<(String, &'n Spanned<Node>), ConfigError> {
    match &item.value {
        Node::Map(entries) => match entries.as_slice() {
            [(key, body)] => {
                let name = key_text(src, key, &format!("in {list}"))?;
                Ok((name, body))
            }
            _ => Err(src.at(
                item,
                format!(
                    "each item of {list} must be a map with exactly one key, its name \
                 (`{example}`), with the settings indented below it; this item has {} keys \
                 — check the indentation",
                    entries.len()
                ),
            )),
        },
        other => Err(src.at(
            item,
            format!(
                "each item of {list} must be `{example}` followed by its settings, not {}",
                other.kind()
            ),
        )),
    }
}

fn map_entries<'n>(
    src: &Source<'_>,
    node: &'n Spanned<Node>,
    place: &str,
) -> Result<&'n [Entry], ConfigError> {
    match &node.value {
        Node::Map(entries) => Ok(entries),
        other => Err(src.at(
            node,
            format!(
                "{place}: expected a mapping of `key: value` settings, found {}",
                other.kind()
            ),
        )),
    }
}

fn key_text(src: &Source<'_>, key: &Spanned<Node>, place: &str) -> Result<String, ConfigError> {
    match &key.value {
        Node::Str(s) => Ok(s.clone()),
        other => Err(src.at(
            key,
            format!(
                "{place}: keys must be names, found {} {}",
                other.kind(),
                other.show()
            ),
        )),
    }
}

fn check_known(
    src: &Source<'_>,
    key: &Spanned<Node>,
    name: &str,
    known: &[&str],
    place: &str,
) -> Result<(), ConfigError> {
    if known.contains(&name) {
        return Ok(());
    }
    let hint = closest(name, known)
        .map(|c| format!("did you mean `{c}`? "))
        .unwrap_or_default();
    Err(src.at(
        key,
        format!(
            "{place}: unknown key `{name}`; {hint}known keys: {}",
            known.join(", ")
        ),
    ))
}
