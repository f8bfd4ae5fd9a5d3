//! `restart`: ask the running streamer to start one slot's session again.
//!
//! Owns the request's refusals (the slot must be configured) and its report. The
//! request is a `restart` signal ([`crate::signal`]) written into the slot's
//! database as a transactional logical message, so it needs no route to the
//! streamer: the slot's own session reads it (or, for a stopped slot, any running
//! session of the same database) and the streamer ends that session, confirming
//! what Kinesis accepted, and starts a new one. It never touches the slot itself.

use serde::Serialize;

use super::find_slot;
use crate::config::Config;
use crate::signal::{self, Signal};

/// The answer to one `restart` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RestartReport {
    pub action: &'static str,
    pub slot: String,
    /// The signal was written into the slot's database.
    pub signalled: bool,
    /// The signal's id (the streamer logs it when it restarts the slot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Where the signal is in the WAL.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lsn: Option<String>,
    /// What was done, or why not and what to do instead.
    pub reason: String,
}

pub async fn restart_slot(
    config: &Config,
    aws: &aws_config::SdkConfig,
    slot: &str,
) -> RestartReport {
    let report = |signalled, id, lsn, reason| RestartReport {
        action: "restart",
        slot: slot.to_string(),
        signalled,
        id,
        lsn,
        reason,
    };
    let Some(cfg) = find_slot(config, slot) else {
        let known: Vec<&str> = config.slots.iter().map(|s| s.name.as_str()).collect();
        let reason = format!(
            "slot {slot:?} is not in configs.yml (configured: {}); only configured slots can be restarted",
            known.join(", ")
        );
        tracing::warn!(slot, %reason, "restart refused");
        return report(false, None, None, reason);
    };
    let id = signal::new_id();
    let request = Signal::Restart {
        slot: slot.to_string(),
        id: id.clone(),
    };
    match signal::send(cfg, aws, request).await {
        Ok(sent) => {
            let (server, lsn) = (sent.server, sent.lsn);
            tracing::info!(slot, signal = %id, %lsn, "restart signal written");
            report(
                true,
                Some(id.clone()),
                Some(lsn.clone()),
                format!(
                    "restart signal {id} written into database {} on {server} at {lsn}: the streamer restarts the slot's session when it reads it (its log says \"restart signal {id} read\"); a stopped slot is restarted when another running slot of the same database reads it, else at its next retry",
                    cfg.db_name
                ),
            )
        }
        Err(e) => report(false, None, None, e.to_string()),
    }
}
