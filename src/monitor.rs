//! WAL safety and heartbeats, one task per slot beside its worker.
//!
//! Every status interval it reads the slot's row in `pg_replication_slots`
//! (`wal_status`, `safe_wal_size`, retained WAL and lag in bytes) over its own SQL
//! connection, stores it for the metrics, and warns when the slot is `unreserved` or
//! its lag passes `wal_lag_warn_bytes`. A `lost` slot is flagged so the session stops
//! it with [`crate::pipeline::SlotError::SlotLost`]. With `heartbeat_interval_secs`
//! it writes a non-transactional logical message into the slot's database so that
//! the slot has something to decode and confirm even when its tables are idle.
//!
//! It never confirms, advances or drops a slot, and a failing query never stops
//! streaming: it is logged and tried again next interval.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_postgres::Client;

use crate::config::SlotConfig;
use crate::metrics::WalSample;
use crate::pipeline::{SlotState, SlotStatus};
use crate::source;

/// The prefix of heartbeat messages (`pg_logical_emit_message`); the session ignores
/// logical messages, so heartbeats never reach the stream.
pub const HEARTBEAT_PREFIX: &str = "pg-cdc-to-kinesis-heartbeat";

/// Repeat a standing warning (unreserved, lag, failing query) at most this often.
const REPEAT_WARNING: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Source(#[from] source::SourceError),
    #[error("slot {slot:?}: {context}: {source}")]
    Query {
        slot: String,
        context: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
}

/// Read the slot's WAL figures; `None` when the slot does not exist.
pub async fn sample(client: &Client, slot: &str) -> Result<Option<WalSample>, MonitorError> {
    let query = |source| MonitorError::Query {
        slot: slot.to_string(),
        context: "reading pg_replication_slots",
        source,
    };
    let rows = client
        .query(
            "SELECT wal_status, safe_wal_size, \
                    (pg_current_wal_lsn() - restart_lsn)::bigint, \
                    (pg_current_wal_lsn() - confirmed_flush_lsn)::bigint, \
                    active, active_pid, confirmed_flush_lsn::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(query)?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let confirmed: Option<String> = row.try_get(6).map_err(query)?;
    Ok(Some(WalSample {
        wal_status: row.try_get(0).map_err(query)?,
        safe_wal_size: row.try_get(1).map_err(query)?,
        retained_bytes: row.try_get(2).map_err(query)?,
        lag_bytes: row.try_get(3).map_err(query)?,
        active: row.try_get(4).map_err(query)?,
        active_pid: row.try_get(5).map_err(query)?,
        confirmed_flush_lsn: confirmed.and_then(|c| c.parse().ok()),
    }))
}

/// Write one heartbeat message into the slot's database.
pub async fn heartbeat(client: &Client, slot: &str) -> Result<(), MonitorError> {
    let now = time::OffsetDateTime::from(SystemTime::now());
    let ts = now
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    client
        .execute(
            "SELECT pg_logical_emit_message(false, $1, $2)",
            &[&HEARTBEAT_PREFIX, &ts],
        )
        .await
        .map_err(|source| MonitorError::Query {
            slot: slot.to_string(),
            context: "writing a heartbeat with pg_logical_emit_message (the user needs EXECUTE on it: GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO <user>, or turn heartbeat_interval_secs off)",
            source,
        })?;
    Ok(())
}

/// What to warn about.
#[derive(Debug, Clone, Copy)]
pub struct WalSafety {
    /// Warn when the slot's lag passes this many bytes.
    pub lag_warn_bytes: u64,
}

/// Watch one slot until the task is aborted.
pub async fn watch_slot(slot: SlotConfig, status: Arc<SlotStatus>, safety: WalSafety) {
    let name = slot.name.clone();
    let mut wal_tick = tokio::time::interval(Duration::from_secs(slot.status_interval_secs.max(1)));
    wal_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let heartbeat_every = slot
        .heartbeat_interval_secs
        .map(|s| Duration::from_secs(s.max(1)));
    let mut hb_tick = tokio::time::interval(heartbeat_every.unwrap_or(Duration::from_secs(3600)));
    hb_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<Client> = None;
    let mut warned = Warnings::default();
    loop {
        let is_heartbeat = tokio::select! {
            _ = wal_tick.tick() => false,
            _ = hb_tick.tick(), if heartbeat_every.is_some() => true,
        };
        let state = status.state();
        // Heartbeats only help a streaming slot; a stopped one would only grow WAL.
        if is_heartbeat && state != SlotState::Streaming {
            continue;
        }
        if client.as_ref().is_none_or(|c| c.is_closed()) {
            let connected = match status.credentials.connect_params().await {
                Ok(params) => source::sql_connect(&params).await,
                Err(e) => {
                    tracing::warn!(slot = %name, "WAL monitor cannot get credentials: {e}");
                    continue;
                }
            };
            match connected {
                Ok(c) => client = Some(c),
                Err(e) => {
                    warned.query_failed(&name, &e.into());
                    continue;
                }
            }
        }
        let Some(c) = client.as_ref() else { continue };
        if is_heartbeat {
            match heartbeat(c, &name).await {
                Ok(()) => status.metrics.heartbeat_sent(),
                Err(e) => warned.query_failed(&name, &e),
            }
            continue;
        }
        match sample(c, &name).await {
            Ok(Some(s)) => {
                warned.check(&name, &s, safety, &state);
                status.metrics.set_wal(s);
            }
            // Not created yet (the worker creates it), or dropped under us: the
            // session reports a missing slot itself.
            Ok(None) => {}
            Err(e) => warned.query_failed(&name, &e),
        }
    }
}

/// Standing conditions already reported, so that a long one is not logged every
/// interval.
#[derive(Default)]
struct Warnings {
    unreserved: Option<std::time::Instant>,
    lag: Option<std::time::Instant>,
    lost: bool,
    query: Option<std::time::Instant>,
}

fn due(last: &mut Option<std::time::Instant>) -> bool {
    if last.is_none_or(|t| t.elapsed() >= REPEAT_WARNING) {
        *last = Some(std::time::Instant::now());
        true
    } else {
        false
    }
}

impl Warnings {
    fn check(&mut self, slot: &str, s: &WalSample, safety: WalSafety, state: &SlotState) {
        match s.wal_status.as_deref() {
            Some("lost") => {
                if !self.lost {
                    self.lost = true;
                    tracing::error!(slot, wal_status = "lost", "[{slot}] replication slot {slot:?} is lost: the server removed WAL it still needed (max_slot_wal_keep_size); changes since its confirmed position are gone. Drop and re-create the slot, then backfill the tables");
                }
            }
            Some("unreserved") => {
                if due(&mut self.unreserved) {
                    tracing::warn!(slot, wal_status = "unreserved", safe_wal_size = s.safe_wal_size, retained_bytes = s.retained_bytes, "[{slot}] replication slot {slot:?} is unreserved: it holds more WAL than max_slot_wal_keep_size and will be lost at the next checkpoint unless it catches up ({}); state: {state:?}", human_bytes_opt(s.safe_wal_size));
                }
            }
            _ => self.unreserved = None,
        }
        let lag = s.lag_bytes.unwrap_or(0).max(0) as u64;
        if lag > safety.lag_warn_bytes {
            if due(&mut self.lag) {
                tracing::warn!(slot, lag_bytes = lag, "[{slot}] replication lag is {} (over wal_lag_warn_bytes, {}); the slot holds WAL on the server while it is behind", human_bytes(lag as f64), human_bytes(safety.lag_warn_bytes as f64));
            }
        } else if self.lag.take().is_some() {
            tracing::info!(
                slot,
                lag_bytes = lag,
                "[{slot}] replication lag is back under wal_lag_warn_bytes ({})",
                human_bytes(lag as f64)
            );
        }
        self.query = None;
    }

    fn query_failed(&mut self, slot: &str, e: &MonitorError) {
        if due(&mut self.query) {
            tracing::warn!(
                slot,
                "[{slot}] WAL monitor: {e}; trying again next interval"
            );
        }
    }
}

fn human_bytes_opt(v: Option<i64>) -> String {
    match v {
        Some(b) => format!("{} left before the limit", human_bytes(b as f64)),
        None => "no limit".to_string(),
    }
}

/// `12.3 MiB`-style sizes.
pub fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut unit = 0;
    while v.abs() >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_sizes_for_people() {
        assert_eq!(human_bytes(0.0), "0 B");
        assert_eq!(human_bytes(1023.0), "1023 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(12.3 * 1024.0 * 1024.0), "12.3 MiB");
        assert_eq!(human_bytes(5.0 * 1024f64.powi(4)), "5.0 TiB");
    }

    #[test]
    fn standing_warnings_repeat_only_after_a_while() {
        let mut last = None;
        assert!(due(&mut last));
        assert!(!due(&mut last));
    }
}
