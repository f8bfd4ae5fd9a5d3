//! `drop`: drop one configured replication slot, on explicit request only.
//!
//! Owns the refusals that make dropping safe: the slot must be configured in
//! `configs.yml` (that is where its server is), `confirm` must repeat its name, no
//! walsender may be streaming from it, and its streamer must not have been seen
//! within `ready_retry_budget_secs` (unless `force`): a streamer in reconnect backoff
//! leaves the slot inactive, and would find it gone. Dropping loses the slot's
//! position: changes made before a new slot exists are never streamed. So before
//! dropping, it marks the slot's SSM checkpoint as dropped at the slot's position,
//! and the streamer's next start reports the gap instead of streaming on from a
//! newer slot. It never drops anything else, and never drops without that mark when
//! checkpoints are on.
//!
//! How the streamer is "seen" (PostgreSQL 15 keeps no time of a slot's last use):
//! - now: a session with the streamer's `application_name`
//!   (`pg-cdc-to-kinesis/<slot>`) is connected; the streamer's WAL monitor keeps one
//!   open for the whole life of the slot's worker, between replication reconnects too;
//! - recently: its checkpoint, which the streamer rewrites at least every
//!   `checkpoint_interval_secs` while the slot's position moves (and at once after a
//!   start), was written less than `ready_retry_budget_secs` ago and is not the
//!   final one of a clean stop.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ssm::primitives::{DateTime, DateTimeFormat};
use serde::Serialize;

use super::find_slot;
use crate::checkpoint::{ssm_client, Checkpoint, CheckpointStore, SsmStore};
use crate::config::{Config, SlotConfig};
use crate::lsn::Lsn;
use crate::source::{self, ConnectParams};

/// The answer to one `drop` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DropReport {
    pub action: &'static str,
    pub slot: String,
    pub dropped: bool,
    /// What was done, or why it was refused and what to do instead.
    pub reason: String,
}

pub async fn drop_slot(
    config: &Config,
    aws: &aws_config::SdkConfig,
    slot: &str,
    confirm: &str,
    force: bool,
) -> DropReport {
    let (dropped, reason) = match try_drop(config, aws, slot, confirm, force).await {
        Ok(done) => (true, done),
        Err(refusal) => (false, refusal),
    };
    if dropped {
        tracing::warn!(slot, force, "dropped replication slot on request");
    } else {
        tracing::warn!(slot, %reason, "refused to drop replication slot");
    }
    DropReport {
        action: "drop",
        slot: slot.to_string(),
        dropped,
        reason,
    }
}

async fn try_drop(
    config: &Config,
    aws: &aws_config::SdkConfig,
    slot: &str,
    confirm: &str,
    force: bool,
) -> Result<String, String> {
    if confirm != slot {
        return Err(format!(
            "confirm ({confirm:?}) does not match slot ({slot:?}): repeat the slot's name in confirm to drop it"
        ));
    }
    let Some(cfg) = find_slot(config, slot) else {
        let known: Vec<&str> = config.slots.iter().map(|s| s.name.as_str()).collect();
        return Err(format!(
            "slot {slot:?} is not in configs.yml (configured: {}); only configured slots can be dropped",
            known.join(", ")
        ));
    };
    let (server, connected) = super::connect(cfg, aws).await;
    let sql = connected?;
    let info = source::slot_info(&sql, slot)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("slot {slot:?} does not exist on {server}"))?;
    if info.active {
        return Err(format!(
            "slot {slot:?} is active (walsender pid {}): stop the streamer (scale its service to 0) first",
            info.active_pid
                .map(|p| p.to_string())
                .unwrap_or_else(|| "unknown".into())
        ));
    }
    let store = cfg
        .checkpoint
        .enabled
        .then(|| SsmStore::new(ssm_client(aws, cfg.region.as_deref())));
    let parameter = &cfg.checkpoint.parameter;
    let previous = match &store {
        Some(store) => store.read(parameter).await.map_err(|e| {
            format!("slot {slot:?} was not dropped: its checkpoint must be marked as dropped first, so that the streamer's next start reports the gap, and reading it failed: {e}")
        })?,
        None => None,
    };
    let budget = config.ops.ready_retry_budget_secs;
    if !force {
        if let Some(seen) = streamer_seen(&sql, cfg, previous.as_ref(), budget).await? {
            return Err(format!(
                "the streamer of slot {slot:?} was seen within ready_retry_budget_secs ({budget}s): {seen}. It may be reconnecting, and would find its slot gone. Stop it (scale its service to 0) and try again after {budget}s, or add \"force\": true"
            ));
        }
    }
    let slot_at = info.confirmed_flush_lsn.unwrap_or_default();
    let at = previous
        .as_ref()
        .and_then(Checkpoint::lsn)
        .map_or(slot_at, |c| c.max(slot_at));
    if let Some(store) = &store {
        store
            .write(parameter, &mark(cfg, at, true))
            .await
            .map_err(|e| format!("slot {slot:?} was not dropped: marking its checkpoint as dropped failed (the admin Lambda needs ssm:PutParameter on it): {e}"))?;
    }
    // PostgreSQL refuses to drop a slot that became active since the check above
    // (SQLSTATE 55006), so the race ends in a refusal, never in a dropped live slot.
    if let Err(e) = sql
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
    {
        let why = e
            .as_db_error()
            .map(|d| d.message().to_string())
            .unwrap_or_else(|| e.to_string());
        let restored = match &store {
            // The slot lives on: put back what the checkpoint said (or, if there was
            // none, the slot's own position, which it has certainly reached).
            Some(store) => {
                let back = previous
                    .clone()
                    .unwrap_or_else(|| mark(cfg, slot_at, false));
                match store.write(parameter, &back).await {
                    Ok(()) => format!("; checkpoint {parameter} restored"),
                    Err(e) => format!("; restoring checkpoint {parameter} failed ({e}): delete it or set accept_checkpoint_gap: true if the next start refuses the slot"),
                }
            }
            None => String::new(),
        };
        return Err(format!(
            "PostgreSQL refused to drop slot {slot:?}: {why}{restored}"
        ));
    }
    let checkpoint = match store {
        Some(_) => format!(
            "; checkpoint {parameter} marked dropped at {at}, so the streamer's next start refuses the slot and names the gap (backfill, then set accept_checkpoint_gap: true)"
        ),
        None => "; checkpoints are off for this slot, so nothing will report the gap".into(),
    };
    Ok(format!(
        "dropped slot {slot:?} on {} (it was confirmed up to {}){checkpoint}; run provision to create it again",
        server,
        info.confirmed_flush_lsn
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into())
    ))
}

/// The checkpoint document the drop leaves (`dropped`), or puts back.
fn mark(cfg: &SlotConfig, at: Lsn, dropped: bool) -> Checkpoint {
    Checkpoint {
        lsn: at.to_string(),
        slot: cfg.name.clone(),
        stream: cfg.kns_stream.clone(),
        database: cfg.db_name.clone(),
        time: crate::checkpoint::now_rfc3339(),
        // `final` too, so that binaries older than `dropped` also report the gap.
        is_final: dropped,
        dropped,
        backfill: None,
    }
}

/// How the slot's streamer was seen within `budget_secs`, if it was.
async fn streamer_seen(
    sql: &tokio_postgres::Client,
    cfg: &SlotConfig,
    checkpoint: Option<&Checkpoint>,
    budget_secs: u64,
) -> Result<Option<String>, String> {
    let application_name = ConnectParams::from_slot(cfg).application_name;
    let rows = sql
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()",
            &[&application_name],
        )
        .await
        .map_err(|e| format!("cannot tell whether the streamer is connected (reading pg_stat_activity: {e}); add \"force\": true to drop anyway"))?;
    if let Some(row) = rows.first() {
        let pid: i32 = row.try_get(0).unwrap_or_default();
        return Ok(Some(format!(
            "a session named {application_name:?} (pid {pid}) is connected"
        )));
    }
    let Some(cp) = checkpoint.filter(|c| !c.binds_the_slot()) else {
        return Ok(None);
    };
    Ok(checkpoint_age_secs(&cp.time, now_secs())
        .filter(|age| *age < budget_secs as f64)
        .map(|age| {
            format!(
                "it wrote checkpoint {} at {} ({age:.0}s ago)",
                cfg.checkpoint.parameter, cp.time
            )
        }))
}

/// Seconds from `time` (RFC 3339) to `now`; `None` when it is not RFC 3339.
fn checkpoint_age_secs(time: &str, now: f64) -> Option<f64> {
    let written = DateTime::from_str(time, DateTimeFormat::DateTime).ok()?;
    Some((now - written.as_secs_f64()).max(0.0))
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_age_is_read_from_the_streamers_rfc3339_time() {
        let now = 1_700_000_100.0; // 2023-11-14T22:15:00Z
        assert_eq!(
            checkpoint_age_secs("2023-11-14T22:13:20Z", now),
            Some(100.0)
        );
        assert_eq!(checkpoint_age_secs("2023-11-14T22:16:00Z", now), Some(0.0));
        assert_eq!(checkpoint_age_secs("yesterday", now), None);
        assert_eq!(
            checkpoint_age_secs(&crate::checkpoint::now_rfc3339(), now_secs()).map(|a| a < 5.0),
            Some(true)
        );
    }
}
