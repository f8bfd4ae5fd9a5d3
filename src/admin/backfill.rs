//! `backfill`: ask the running streamer to put tables' existing rows on the stream.
//!
//! Owns the request's refusals (a configured slot, at least one table) and its
//! report. The request is a `backfill` signal ([`crate::signal`]) written into the
//! slot's database; the slot's own session reads it and backfills
//! (`crate::backfill`). It never reads a table itself.

use serde::Serialize;

use super::find_slot;
use crate::config::Config;
use crate::signal;

/// What `backfill` returns: the signal written, or why not.
#[derive(Debug, Serialize)]
pub struct BackfillReport {
    pub slot: String,
    pub requested: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent: Option<signal::Sent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Signal `slot`'s streamer to backfill `tables`, through the slot's database.
pub async fn backfill(
    config: &Config,
    aws: &aws_config::SdkConfig,
    slot: &str,
    tables: Vec<String>,
    filter: Option<String>,
) -> BackfillReport {
    let report = |sent: Option<signal::Sent>, error: Option<String>| BackfillReport {
        slot: slot.to_string(),
        requested: sent.is_some(),
        sent,
        error,
    };
    let Some(cfg) = find_slot(config, slot) else {
        let known: Vec<&str> = config.slots.iter().map(|s| s.name.as_str()).collect();
        return report(
            None,
            Some(format!(
                "no slot {slot:?} in the config; configured: {}",
                known.join(", ")
            )),
        );
    };
    if tables.is_empty() {
        return report(
            None,
            Some("no tables named: give \"tables\": [\"schema.table\", ...]".into()),
        );
    }
    let signal = signal::Signal::Backfill {
        slot: slot.to_string(),
        id: signal::new_id(),
        tables,
        filter: filter.filter(|f| !f.trim().is_empty()),
    };
    match signal::send(cfg, aws, signal).await {
        Ok(sent) => report(Some(sent), None),
        Err(e) => report(None, Some(e.to_string())),
    }
}
