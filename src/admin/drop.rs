//! `drop`: drop one configured replication slot, on explicit request only.
//!
//! Owns the refusals that make dropping safe: the slot must be configured in
//! `configs.yml` (that is where its server is), `confirm` must repeat its name, and no
//! walsender may be streaming from it. Dropping loses the slot's position: changes
//! made before a new slot exists are never streamed. It never drops anything else.

use serde::Serialize;

use super::find_slot;
use crate::config::Config;
use crate::source;

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
) -> DropReport {
    let (dropped, reason) = match try_drop(config, aws, slot, confirm).await {
        Ok(done) => (true, done),
        Err(refusal) => (false, refusal),
    };
    if dropped {
        tracing::warn!(slot, "dropped replication slot on request");
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
    // PostgreSQL refuses to drop a slot that became active since the check above
    // (SQLSTATE 55006), so the race ends in a refusal, never in a dropped live slot.
    sql.execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await
        .map_err(|e| {
            format!(
                "PostgreSQL refused to drop slot {slot:?}: {}",
                e.as_db_error()
                    .map(|d| d.message().to_string())
                    .unwrap_or_else(|| e.to_string())
            )
        })?;
    Ok(format!(
        "dropped slot {slot:?} on {} (it was confirmed up to {}); run provision to create it again",
        server,
        info.confirmed_flush_lsn
            .map(|l| l.to_string())
            .unwrap_or_else(|| "-".into())
    ))
}
