//! How a session opens its slot: the slot judged by preflight's rules before anything
//! is created, created with wal2json if need be, partitioned tables expanded, and the
//! oversize and shape rules its records are encoded with.

use super::super::preflight::{self, SlotPlan};
use super::super::{SlotError, SlotStatus};
use crate::config::SlotConfig;
use crate::decode;
use crate::lsn::Lsn;
use crate::record::shape::ShapeRules;
use crate::source::{self, ConnectParams};

/// Connect for slot SQL and judge the slot by `preflight`'s rules (the same `check`
/// applies); nothing is created yet.
pub(super) async fn inspect_slot(
    slot: &SlotConfig,
    params: &ConnectParams,
) -> Result<(tokio_postgres::Client, SlotPlan), SlotError> {
    let sql = source::sql_connect(params).await?;
    // Before any slot is created: a refused configuration leaves nothing behind.
    let (options, format) = decode::effective_options(&slot.options);
    let tables = source::table_identities(&sql).await?;
    source::check_identities(&slot.partition_key, &options, format, &tables).map_err(|source| {
        SlotError::IdentityLacksKey {
            slot: slot.name.clone(),
            source,
        }
    })?;
    if slot.partition_key == crate::config::PartitionKey::PrimaryKey
        && slot.batch.aggregation == crate::config::Aggregation::None
    {
        let keyless = source::keyless_tables(&options, &tables);
        if !keyless.is_empty() {
            tracing::warn!(slot = %slot.name, tables = %keyless.join(", "), "{} table(s) without a primary key ({}): each is one partition key, so its changes go out one per round trip (about 25-50 a second at real Kinesis latencies) to keep their order. Set `aggregation: kpl` to send thousands a second in order, or add primary keys", keyless.len(), keyless.join(", "));
        }
    }
    let info = source::slot_info(&sql, &slot.name).await?;
    let plan = preflight::judge_slot(slot, info.as_ref(), params)?;
    Ok((sql, plan))
}

/// Create the slot with wal2json if the plan says so; the confirmed position.
pub(super) async fn open_slot(
    slot: &SlotConfig,
    sql: &tokio_postgres::Client,
    plan: SlotPlan,
    status: &SlotStatus,
) -> Result<Lsn, SlotError> {
    match plan {
        SlotPlan::Resume(at) => Ok(at),
        SlotPlan::Create => {
            let at = source::create_slot(sql, &slot.name).await?;
            status.slot_created(at);
            Ok(at)
        }
    }
}

/// `options` with the partitions of each partitioned table its table lists name
/// (`partition_root: true`): wal2json matches a change by its partition's name.
pub(super) async fn expand_partitioned(
    slot: &SlotConfig,
    sql: &tokio_postgres::Client,
    options: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, SlotError> {
    let (options, added) = super::super::catalog::expand_partitioned(sql, options).await?;
    if !added.is_empty() {
        tracing::info!(slot = %slot.name, partitions = %added.join(", "), "partition_root: the table lists name partitioned tables; their {} partition(s) were added (a partition attached later is added when the slot's session starts again)", added.len());
    }
    Ok(options)
}

/// The slot's oversize rule, with the `oversize` of its `tables:` entries.
pub(super) fn oversize_rule(slot: &SlotConfig) -> crate::record::oversize::Oversize {
    use crate::config::{OversizeMode, TableOversize};
    let rule = crate::record::oversize::Oversize::new(slot);
    if slot.tables.entries.iter().all(|e| e.oversize.is_none()) {
        return rule;
    }
    let tables = slot.tables.clone();
    rule.with_table_modes(std::sync::Arc::new(move |schema: &str, table: &str| {
        tables
            .entry_for(schema, table)
            .and_then(|e| e.oversize)
            .map(|m| match m {
                TableOversize::Fail => OversizeMode::Fail,
                TableOversize::S3 => OversizeMode::S3,
            })
    }))
}

/// The slot's shape rules, with the `partition_root` of its `tables:` entries: the
/// entry that decides the root table, else the one that decides the leaf.
pub(super) fn shape_rules(slot: &SlotConfig) -> ShapeRules {
    let mut rules = ShapeRules::from_config(&slot.shape);
    if slot
        .tables
        .entries
        .iter()
        .any(|e| e.partition_root.is_some())
    {
        let tables = slot.tables.clone();
        rules.root = crate::record::shape::RootRule::new(slot.shape.partition_root).with_per_table(
            move |leaf, root| {
                tables
                    .entry_for(root.0, root.1)
                    .and_then(|e| e.partition_root)
                    .or_else(|| {
                        tables
                            .entry_for(leaf.0, leaf.1)
                            .and_then(|e| e.partition_root)
                    })
            },
        );
    }
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, OversizeMode};

    fn slot(extra: &str) -> SlotConfig {
        let text = format!(
            "replication_slots:\n  - s:\n      host: db\n      user: u\n      db_name: d\n      \
             kns_stream: main\n      oversize_bucket: claims\n{extra}"
        );
        let config = Config::from_text(std::path::Path::new("t.yml"), &text, &|_| None);
        config.unwrap().slots.remove(0)
    }

    #[test]
    fn table_entries_decide_oversize_and_partition_root_for_their_tables_only() {
        let s = slot(
            "      tables:\n        - match: public.big\n          oversize: s3\n          \
             partition_root: true\n        - match: public.leaf_*\n          partition_root: false\n",
        );
        let oversize = oversize_rule(&s);
        assert_eq!(oversize.mode_for("public", "big"), OversizeMode::S3);
        assert_eq!(oversize.mode_for("public", "small"), OversizeMode::Fail);
        assert!(oversize.may_offload());
        let root = shape_rules(&s).root;
        assert!(
            root.applies(("public", "big_2024"), ("public", "big")),
            "by the root"
        );
        assert!(
            !root.applies(("public", "leaf_1"), ("public", "other")),
            "by the leaf"
        );
        assert!(
            !root.applies(("public", "x_1"), ("public", "x")),
            "the slot's default"
        );
    }

    #[test]
    fn without_entries_that_say_so_the_slot_keys_decide_alone() {
        let s = slot("      partition_root: true\n");
        assert!(!oversize_rule(&s).may_offload());
        assert!(shape_rules(&s)
            .root
            .applies(("public", "x_1"), ("public", "x")));
    }
}
