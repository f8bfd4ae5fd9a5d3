//! `check`: is every slot ready to stream? Connects, asks, reports; changes nothing
//! lasting.
//!
//! Owns the pre-flight checks per slot: the server is reachable and the credentials
//! work, `wal_level` is `logical`, wal2json loads (a temporary slot, dropped with the
//! session), the slot passes `run`'s rules (`pipeline::preflight`: its database, its
//! plugin, not lost, or missing and creatable), every decoded table has a replica
//! identity that carries the partition-key columns, the checkpoint is readable and
//! consistent with the slot (when `checkpoint` is on), and the region and the Kinesis
//! stream exist; it warns when backfills cannot see other sessions' state. It never
//! creates a permanent slot, never writes a checkpoint and never writes to a stream.

use crate::checkpoint::{ssm_client, startup, SsmStore};
use crate::config::{Config, SlotConfig};
use crate::credentials::Credentials;
use crate::decode::TableFilter;
use crate::pipeline::{self, preflight, preflight::SlotPlan};
use crate::sink::kinesis::KinesisSink;
use crate::source;

/// One line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckRow {
    pub slot: String,
    pub database: String,
    pub stream: String,
    /// Each check and its finding, in order.
    pub checks: Vec<(String, Result<String, String>)>,
}

impl CheckRow {
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|(_, r)| r.is_ok())
    }
}

pub async fn check(config: &Config, aws: &aws_config::SdkConfig) -> Vec<CheckRow> {
    let mut rows = Vec::new();
    for slot in &config.slots {
        rows.push(check_slot(slot, aws).await);
    }
    rows
}

async fn check_slot(slot: &SlotConfig, aws: &aws_config::SdkConfig) -> CheckRow {
    let mut checks: Vec<(String, Result<String, String>)> = Vec::new();
    let connected = match Credentials::new(slot, aws).connect_params().await {
        Ok(params) => source::sql_connect(&params)
            .await
            .map(|sql| (params, sql))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    // The slot as `run` would judge it; the checkpoint rule needs it.
    let mut plan = None;
    match connected {
        Err(e) => checks.push(("connect".into(), Err(e))),
        Ok((params, sql)) => {
            checks.push(("connect".into(), Ok(params.endpoint())));
            let level = source::wal_level(&sql).await.map_err(|e| e.to_string());
            let logical = matches!(&level, Ok(l) if l == "logical");
            checks.push((
                "wal_level".into(),
                match level {
                    Ok(l) if l == "logical" => Ok(l),
                    Ok(l) => Err(format!(
                        "wal_level is {l}, logical decoding needs logical: set wal_level = logical (on RDS: rds.logical_replication = 1 in the parameter group) and restart the server"
                    )),
                    Err(e) => Err(e),
                },
            ));
            if logical {
                checks.push(("wal2json".into(), probe_wal2json(&sql, &slot.name).await));
            }
            let (state, judged) = slot_state(&sql, slot, &params).await;
            plan = judged;
            checks.push(("slot".into(), state));
            if let Some(tables) = table_filter_warnings(&sql, slot).await {
                checks.push(("tables".into(), tables));
            }
            checks.push(("identity".into(), identities(&sql, slot).await));
            checks.push(("replident".into(), replica_identity(&sql, slot).await));
            checks.push(("sessions".into(), session_states(&sql).await));
        }
    }
    if slot.checkpoint.enabled {
        checks.push(("checkpoint".into(), checkpoint_state(slot, aws, plan).await));
    }
    let client = pipeline::kinesis_client(aws, slot);
    // Every stream the slot writes to: `kns_stream`, then those `tables:` routes to.
    for (i, name) in slot.streams().iter().enumerate() {
        let stream = match preflight::require_region(slot, &client) {
            Err(e) => Err(e.to_string()),
            Ok(()) => KinesisSink::new(client.clone(), &slot.name, name, slot.batch.clone())
                .prepare()
                .await
                .map(|max| format!("exists (records up to {max} bytes)"))
                .map_err(|e| e.to_string()),
        };
        let label = if i == 0 {
            "stream".to_string()
        } else {
            format!("stream {name}")
        };
        checks.push((label, stream));
    }
    CheckRow {
        slot: slot.name.clone(),
        database: slot.db_name.clone(),
        stream: slot.kns_stream.clone(),
        checks,
    }
}

/// Whether a backfill can tell the sessions of other roles that sit idle in a
/// transaction (which cannot have committed) from running ones
/// ([`crate::backfill::unseen_session_states`]). `Ok` with a `warning:` when it cannot:
/// chunks then wait for those sessions too.
async fn session_states(sql: &tokio_postgres::Client) -> Result<String, String> {
    let warnings = crate::backfill::unseen_session_states(sql)
        .await
        .map_err(|e| format!("cannot read the role's attributes: {e}"))?;
    Ok(if warnings.is_empty() {
        "backfills can see which sessions sit idle in a transaction".into()
    } else {
        format!("warning: {}", warnings.join("; "))
    })
}

/// Create and drop a temporary wal2json slot: proves the plugin loads and the
/// user may create slots.
pub(crate) async fn probe_wal2json(
    sql: &tokio_postgres::Client,
    slot: &str,
) -> Result<String, String> {
    let probe = format!(
        "{}_check_{}",
        &slot[..slot.len().min(40)],
        std::process::id()
    );
    let result = sql
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, 'wal2json', true)",
            &[&probe],
        )
        .await;
    match result {
        Ok(_) => {
            let _ = sql.execute("SELECT pg_drop_replication_slot($1)", &[&probe]).await;
            Ok("loads".into())
        }
        Err(e) => Err(format!(
            "cannot create a wal2json slot: {}; install wal2json (postgresql-NN-wal2json; built in on RDS) and grant the user REPLICATION (rds_replication on RDS)",
            e.as_db_error().map(|d| d.message().to_string()).unwrap_or_else(|| e.to_string())
        )),
    }
}

/// The slot by `run`'s rules (`pipeline::preflight`), and what `run` would do with it.
async fn slot_state(
    sql: &tokio_postgres::Client,
    slot: &SlotConfig,
    params: &source::ConnectParams,
) -> (Result<String, String>, Option<SlotPlan>) {
    let info = match source::slot_info(sql, &slot.name).await {
        Ok(info) => info,
        Err(e) => return (Err(e.to_string()), None),
    };
    match preflight::judge_slot(slot, info.as_ref(), params) {
        Err(e) => (Err(e.to_string()), None),
        Ok(plan @ SlotPlan::Create) => (Ok("missing: will be created on start".into()), Some(plan)),
        Ok(plan @ SlotPlan::Resume(at)) => {
            let active = info.as_ref().is_some_and(|i| i.active);
            (
                Ok(format!(
                    "exists{}, confirmed {at}",
                    if active { " (active)" } else { "" }
                )),
                Some(plan),
            )
        }
    }
}

/// The checkpoint as `run` would judge it at start-up; the store must be readable.
async fn checkpoint_state(
    slot: &SlotConfig,
    aws: &aws_config::SdkConfig,
    plan: Option<SlotPlan>,
) -> Result<String, String> {
    let store = SsmStore::new(ssm_client(aws, slot.region.as_deref()));
    startup::preview(
        &store,
        &slot.name,
        &slot.checkpoint.parameter,
        slot.checkpoint.accept_gap,
        plan.map(SlotPlan::seen),
    )
    .await
}

/// The tables the slot decodes whose updates and deletes wal2json would skip.
async fn replica_identity(
    sql: &tokio_postgres::Client,
    slot: &SlotConfig,
) -> Result<String, String> {
    let filter = TableFilter::from_options(&slot.options);
    let tables: Vec<String> = source::tables_without_identity(sql)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(schema, table)| filter.decodes(schema, table))
        .map(|(schema, table)| format!("{schema}.{table}"))
        .collect();
    match tables.as_slice() {
        [] => Ok("every decoded table has a primary key or a replica identity".into()),
        [first, ..] => Err(format!(
            "no primary key and no replica identity, so wal2json skips their updates and deletes: {}; run ALTER TABLE {first} REPLICA IDENTITY FULL (for each), or add a primary key, or leave the table out with filter-tables",
            tables.join(", ")
        )),
    }
}

/// The tables a slot's `add-tables` / `filter-tables` name, looked up in its
/// database. `None` when it names none. Missing tables or schemas, views and
/// partitioned parents (wal2json reports a partition's rows under the leaf
/// partition's own name, so a parent matches nothing) are `Ok` with a `warning:`
/// text: the slot streams, but skips (or keeps) rows the user meant otherwise. An
/// entry wal2json refuses (no schema) is `Err`: the slot could not start.
pub(crate) async fn table_filter_warnings(
    sql: &tokio_postgres::Client,
    slot: &SlotConfig,
) -> Option<Result<String, String>> {
    use crate::decode::{table_patterns, TABLE_LIST_OPTIONS};
    let lists: Vec<(&str, &str)> = slot
        .options
        .iter()
        .filter(|(name, _)| TABLE_LIST_OPTIONS.contains(&name.as_str()))
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    if lists.is_empty() {
        return None;
    }
    let (mut found, mut warnings) = (0usize, Vec::new());
    for (option, value) in lists {
        for pattern in table_patterns(value) {
            let pattern = match pattern {
                Ok(p) => p,
                Err(entry) => {
                    return Some(Err(format!(
                        "{option} entry `{entry}` has no schema: wal2json needs `schema.table` (for example `public.{entry}`) and refuses the option when the slot starts"
                    )))
                }
            };
            // `relkind` of the named relation (any schema for `*.name`), or
            // `n` for a named schema with `*` tables; no row when nothing matches.
            let row = sql
                .query_opt(
                    "SELECT CASE WHEN $2::text IS NULL THEN 'n' ELSE c.relkind::text END, \
                            (SELECT string_agg(format('%s.%s', ln.nspname, lc.relname), ', ') \
                             FROM (SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf \
                                   ORDER BY relid LIMIT 3) l \
                             JOIN pg_class lc ON lc.oid = l.relid \
                             JOIN pg_namespace ln ON ln.oid = lc.relnamespace \
                             WHERE c.relkind = 'p') \
                     FROM pg_namespace n LEFT JOIN pg_class c \
                       ON c.relnamespace = n.oid AND c.relname = $2 \
                     WHERE ($1::text IS NULL OR n.nspname = $1) \
                       AND ($2::text IS NULL OR c.oid IS NOT NULL) \
                     ORDER BY c.relkind = 'p' LIMIT 1",
                    &[&pattern.schema, &pattern.table],
                )
                .await;
            let row = match row {
                Ok(row) => row,
                Err(e) => return Some(Err(format!("cannot look up {option} tables: {e}"))),
            };
            let kind: Option<String> = row.as_ref().and_then(|r| r.try_get(0).ok());
            match kind.as_deref() {
                None if pattern.table.is_none() => warnings.push(format!(
                    "{option} names schema `{}`, which does not exist in database {}",
                    pattern.schema.as_deref().unwrap_or("*"),
                    slot.db_name
                )),
                None => warnings.push(format!(
                    "{option} names `{pattern}`, which does not exist in database {}: names are matched exactly, case included",
                    slot.db_name
                )),
                // Expanded to its partitions when the slot starts (`pipeline::catalog`).
                Some("p") if slot.shape.partition_root => found += 1,
                Some("p") => {
                    let leaves: Option<String> = row.as_ref().and_then(|r| r.try_get(1).ok());
                    warnings.push(format!(
                        "{option} names `{pattern}`, a partitioned table: wal2json reports its rows under each partition's own name ({}), so set partition_root: true (its partitions are then streamed under its name), or name the partitions or `schema.*`",
                        leaves.unwrap_or_else(|| "it has none yet".into())
                    ));
                }
                Some("v" | "m" | "f") => warnings.push(format!(
                    "{option} names `{pattern}`, a view or foreign table: it has no changes to stream"
                )),
                Some(_) => found += 1,
            }
        }
    }
    Some(Ok(if warnings.is_empty() {
        format!("{found} named table(s) or schema(s) exist")
    } else {
        format!("warning: {}", warnings.join("; "))
    }))
}

/// The same replica-identity check a slot runs before it starts streaming.
async fn identities(sql: &tokio_postgres::Client, slot: &SlotConfig) -> Result<String, String> {
    let (options, format) = crate::decode::effective_options(&slot.options);
    let tables = source::table_identities(sql)
        .await
        .map_err(|e| e.to_string())?;
    source::check_identities(&slot.partition_key, &options, format, &tables)
        .map_err(|e| e.to_string())?;
    Ok("the replica identities carry the partition-key columns".into())
}

/// The report as a text table.
pub fn render(rows: &[CheckRow]) -> String {
    let mut out = String::new();
    for row in rows {
        let verdict = if row.ok() { "OK" } else { "FAILED" };
        out.push_str(&format!(
            "{} (database {}, stream {}): {verdict}\n",
            row.slot, row.database, row.stream
        ));
        for (name, result) in &row.checks {
            match result {
                Ok(text) => out.push_str(&format!("  {name:<10} ok    {text}\n")),
                Err(text) => out.push_str(&format!("  {name:<10} FAIL  {text}\n")),
            }
        }
    }
    out
}
