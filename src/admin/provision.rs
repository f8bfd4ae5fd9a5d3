//! `provision`: check each slot's server prerequisites and create the missing slots.
//!
//! Owns the prerequisite checks a slot needs before the streamer can use it:
//! `wal_level` (and `rds.logical_replication` on RDS), the user's `REPLICATION`
//! privilege or `rds_replication` membership, free `max_replication_slots` and
//! `max_wal_senders`, and that wal2json loads; it warns about `add-tables` /
//! `filter-tables` entries that match nothing (see
//! [`crate::check::table_filter_warnings`]). It is idempotent: an existing wal2json
//! slot is left exactly as it is, and the only other lasting change it can make is
//! creating a missing slot. It never drops, advances or alters a slot.

use serde::Serialize;
use tokio_postgres::Client;

use super::Finding;
use crate::config::{Config, SlotConfig};
use crate::source::{self, OUTPUT_PLUGIN};

/// The report of one `provision` run.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReport {
    pub action: &'static str,
    /// True when every slot exists with wal2json and every check passed.
    pub ok: bool,
    pub slots: Vec<SlotProvision>,
}

/// One slot's prerequisites and what was done about the slot.
#[derive(Debug, Clone, Serialize)]
pub struct SlotProvision {
    pub slot: String,
    /// `postgres://user@host:port/db` (no password).
    pub server: String,
    pub ok: bool,
    /// `created`, `exists`, or `none` (a prerequisite failed, nothing was changed).
    pub outcome: &'static str,
    pub checks: Vec<Finding>,
}

pub async fn provision(config: &Config, aws: &aws_config::SdkConfig) -> ProvisionReport {
    let mut slots = Vec::with_capacity(config.slots.len());
    // One slot at a time: creating a slot waits for running transactions, and two
    // creations on one server would only wait for each other.
    for slot in &config.slots {
        slots.push(provision_slot(slot, aws).await);
    }
    ProvisionReport {
        action: "provision",
        ok: slots.iter().all(|s| s.ok),
        slots,
    }
}

async fn provision_slot(slot: &SlotConfig, aws: &aws_config::SdkConfig) -> SlotProvision {
    let (server, connected) = super::connect(slot, aws).await;
    let mut report = SlotProvision {
        slot: slot.name.clone(),
        server: server.clone(),
        ok: false,
        outcome: "none",
        checks: Vec::new(),
    };
    let sql = match connected {
        Ok(sql) => sql,
        Err(e) => {
            report.checks.push(Finding::new("connect", Err(e)));
            return report;
        }
    };
    report.checks.push(Finding::new("connect", Ok(server)));
    let existing = match source::slot_info(&sql, &slot.name).await {
        Ok(info) => info,
        Err(e) => {
            report.checks.push(Finding::new("slot", Err(e.to_string())));
            return report;
        }
    };
    report
        .checks
        .push(Finding::new("wal_level", check_wal_level(&sql).await));
    report
        .checks
        .push(Finding::new("privilege", check_privilege(&sql).await));
    let active = existing.as_ref().is_some_and(|i| i.active);
    report.checks.push(Finding::new(
        "capacity",
        check_capacity(&sql, existing.is_some(), active).await,
    ));
    match existing {
        Some(info) => {
            let state = if info.plugin.as_deref() != Some(OUTPUT_PLUGIN) {
                Err(format!(
                    "slot exists with plugin {}, not {OUTPUT_PLUGIN}: drop it or rename the slot in configs.yml",
                    info.plugin.as_deref().unwrap_or("none (physical slot)")
                ))
            } else if info.wal_status.as_deref() == Some("lost") {
                Err("slot exists but is lost (its WAL was removed): drop it with the drop action, provision again, then backfill".into())
            } else {
                Ok(format!(
                    "exists with {OUTPUT_PLUGIN}{}, confirmed up to {}",
                    if info.active { ", active" } else { "" },
                    info.confirmed_flush_lsn
                        .map(|l| l.to_string())
                        .unwrap_or_else(|| "-".into())
                ))
            };
            report.outcome = "exists";
            report.checks.push(Finding::new("slot", state));
        }
        None => {
            // Prove the plugin loads before the real slot exists, so a failure
            // leaves nothing behind.
            if report.checks.iter().all(|c| c.ok) {
                report.checks.push(Finding::new(
                    "wal2json",
                    crate::check::probe_wal2json(&sql, &slot.name).await,
                ));
            }
            if report.checks.iter().all(|c| c.ok) {
                let created = source::create_slot(&sql, &slot.name)
                    .await
                    .map(|lsn| format!("created with {OUTPUT_PLUGIN} at {lsn}"))
                    .map_err(|e| e.to_string());
                if created.is_ok() {
                    report.outcome = "created";
                }
                report.checks.push(Finding::new("slot", created));
            } else {
                report.checks.push(Finding::new(
                    "slot",
                    Err("missing; not created because a check above failed".into()),
                ));
            }
        }
    }
    // After the slot: a table list that matches nothing is a warning, not a reason
    // to leave the slot uncreated.
    if let Some(tables) = crate::check::table_filter_warnings(&sql, slot).await {
        if let Ok(text) = &tables {
            if text.starts_with("warning:") {
                tracing::warn!(slot = %slot.name, "{text}");
            }
        }
        report.checks.push(Finding::new("tables", tables));
    }
    report.ok = report.checks.iter().all(|c| c.ok);
    report
}

async fn check_wal_level(sql: &Client) -> Result<String, String> {
    let level = source::wal_level(sql).await.map_err(|e| e.to_string())?;
    // `current_setting(name, true)` returns NULL instead of failing off RDS.
    let rds: Option<String> = sql
        .query_one(
            "SELECT current_setting('rds.logical_replication', true)",
            &[],
        )
        .await
        .ok()
        .and_then(|row| row.try_get(0).ok())
        .flatten()
        .filter(|v: &String| !v.is_empty());
    let rds_text = rds
        .as_deref()
        .map(|v| format!(", rds.logical_replication = {v}"))
        .unwrap_or_default();
    if level == "logical" {
        Ok(format!("wal_level = logical{rds_text}"))
    } else {
        Err(format!(
            "wal_level = {level}{rds_text}: logical decoding needs wal_level = logical; set it (on RDS: rds.logical_replication = 1 in the DB parameter group) and restart the server"
        ))
    }
}

async fn check_privilege(sql: &Client) -> Result<String, String> {
    // pg_has_role fails for a role that does not exist, so rds_replication is looked
    // up in pg_roles first: off RDS there is none.
    let row = sql
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolreplication, \
                    EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'rds_replication' \
                            AND pg_has_role(current_user, g.oid, 'MEMBER')) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read the user's roles: {e}"))?;
    let get = |i: usize| row.try_get::<_, bool>(i).unwrap_or(false);
    let user: String = row.try_get(0).unwrap_or_default();
    let (superuser, replication, rds_replication) = (get(1), get(2), get(3));
    if replication || rds_replication || superuser {
        let how = if replication {
            "REPLICATION"
        } else if rds_replication {
            "rds_replication"
        } else {
            "superuser"
        };
        Ok(format!("user {user} has {how}"))
    } else {
        Err(format!(
            "user {user} may not use replication slots: ALTER ROLE {user} WITH REPLICATION (on RDS: GRANT rds_replication TO {user})"
        ))
    }
}

/// Free replication slots and WAL senders. A missing slot needs one free slot (the
/// wal2json probe's temporary slot is dropped before the real one is created); a
/// slot nobody streams from needs a free WAL sender for the streamer to connect.
async fn check_capacity(sql: &Client, exists: bool, active: bool) -> Result<String, String> {
    let row = sql
        .query_one(
            "SELECT current_setting('max_replication_slots')::int, \
                    (SELECT count(*) FROM pg_replication_slots)::int, \
                    current_setting('max_wal_senders')::int, \
                    (SELECT count(*) FROM pg_stat_replication)::int",
            &[],
        )
        .await
        .map_err(|e| format!("cannot read slot and WAL sender usage: {e}"))?;
    let get = |i: usize| row.try_get::<_, i32>(i).unwrap_or(0);
    let (max_slots, used_slots, max_senders, used_senders) = (get(0), get(1), get(2), get(3));
    let text = format!(
        "replication slots {used_slots} of {max_slots} used, WAL senders {used_senders} of {max_senders} used"
    );
    let slots_needed = if exists { 0 } else { 1 };
    let senders_needed = if active { 0 } else { 1 };
    if max_slots - used_slots < slots_needed {
        return Err(format!(
            "{text}: no room for the slot; raise max_replication_slots (a restart; on RDS in the parameter group) or drop unused slots"
        ));
    }
    if max_senders - used_senders < senders_needed {
        return Err(format!(
            "{text}: no WAL sender free for the streamer; raise max_wal_senders (a restart; on RDS in the parameter group)"
        ));
    }
    Ok(text)
}
