//! `health`: each slot's state, its SSM checkpoint, and CloudWatch metrics of both.
//!
//! Owns the per-slot health report (exists, active, walsender pid, `wal_status`, lag
//! and retained WAL in bytes, checkpoint LSN and age) and the values it publishes as
//! EMF lines (dimension `Slot`, see [`super::emf`]). It only reads PostgreSQL and SSM;
//! it never changes a slot or a checkpoint.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_sdk_ssm::primitives::{DateTime, DateTimeFormat};
use serde::Serialize;

use super::emf::{self, Datum};
use super::{AdminContext, AdminError};
use crate::checkpoint::{ssm_client, CheckpointStore, SsmStore};
use crate::config::{Config, SlotConfig};
use crate::lsn::Lsn;
use crate::source;

/// CloudWatch namespace of every metric this service publishes, unless configured.
pub const DEFAULT_METRICS_NAMESPACE: &str = crate::config::DEFAULT_METRICS_NAMESPACE;
/// WAL bytes between the server's insert position and the slot's confirmed position
/// (the streamer publishes the same name).
pub const METRIC_REPLICATION_LAG_BYTES: &str = crate::metrics::names::REPLICATION_LAG_BYTES;
/// WAL bytes the slot keeps on the server's disk (from its restart position).
pub const METRIC_SLOT_RETAINED_WAL_BYTES: &str = crate::metrics::names::SLOT_RETAINED_WAL_BYTES;
/// Seconds since the slot's checkpoint was last written.
pub const METRIC_CHECKPOINT_AGE_SECONDS: &str = crate::metrics::names::CHECKPOINT_AGE_SECONDS;
/// 1 when a walsender streams from the slot, else 0 (also when it cannot be read).
pub const METRIC_SLOT_ACTIVE: &str = "SlotActive";
/// The dimension naming the slot on every metric.
pub const DIMENSION_SLOT: &str = "Slot";

/// The report of one `health` run.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    pub action: &'static str,
    pub namespace: String,
    /// True when every slot exists, is active, and is not lost.
    pub ok: bool,
    pub slots: Vec<SlotHealth>,
}

/// One slot's state.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SlotHealth {
    pub slot: String,
    pub server: String,
    pub exists: bool,
    pub active: bool,
    pub active_pid: Option<i32>,
    /// `reserved`, `extended`, `unreserved` or `lost`.
    pub wal_status: Option<String>,
    pub current_wal_lsn: Option<Lsn>,
    pub confirmed_flush_lsn: Option<Lsn>,
    pub lag_bytes: Option<u64>,
    pub retained_wal_bytes: Option<u64>,
    pub checkpoint_lsn: Option<String>,
    pub checkpoint_time: Option<String>,
    pub checkpoint_age_seconds: Option<f64>,
    /// Why some of the above is unknown.
    pub errors: Vec<String>,
}

pub async fn health(config: &Config, ctx: &AdminContext) -> Result<HealthReport, AdminError> {
    // In parallel: one unreachable server (30 s connect timeout) must not delay the
    // others' metrics past the next scheduled run.
    let slots = futures_util::future::join_all(config.slots.iter().map(|slot| async move {
        let mut h = slot_health(slot, &ctx.aws).await;
        read_checkpoint(&ctx.aws, slot, &mut h).await;
        h
    }))
    .await;
    let at = SystemTime::now();
    let lines: Vec<String> = slots
        .iter()
        .map(|h| emf::line(&ctx.namespace, DIMENSION_SLOT, &h.slot, &datums(h), at))
        .collect();
    emf::publish(&ctx.metrics_out, &lines)?;
    Ok(HealthReport {
        action: "health",
        namespace: ctx.namespace.clone(),
        ok: slots
            .iter()
            .all(|s| s.exists && s.active && s.wal_status.as_deref() != Some("lost")),
        slots,
    })
}

async fn slot_health(slot: &SlotConfig, aws: &aws_config::SdkConfig) -> SlotHealth {
    let (server, connected) = super::connect(slot, aws).await;
    let mut h = SlotHealth {
        slot: slot.name.clone(),
        server,
        ..SlotHealth::default()
    };
    let sql = match connected {
        Ok(sql) => sql,
        Err(e) => {
            h.errors.push(e);
            return h;
        }
    };
    let info = match source::slot_info(&sql, &slot.name).await {
        Ok(Some(info)) => info,
        Ok(None) => {
            h.errors.push(format!(
                "slot {} does not exist: run the provision action",
                slot.name
            ));
            return h;
        }
        Err(e) => {
            h.errors.push(e.to_string());
            return h;
        }
    };
    h.exists = true;
    h.active = info.active;
    h.active_pid = info.active_pid;
    h.wal_status = info.wal_status;
    h.confirmed_flush_lsn = info.confirmed_flush_lsn;
    match source::current_wal_lsn(&sql).await {
        Ok(current) => {
            h.current_wal_lsn = Some(current);
            h.lag_bytes = info
                .confirmed_flush_lsn
                .map(|c| current.0.saturating_sub(c.0));
            h.retained_wal_bytes = info.restart_lsn.map(|r| current.0.saturating_sub(r.0));
        }
        Err(e) => h.errors.push(e.to_string()),
    }
    h
}

/// Fill in the checkpoint fields (through the streamer's own reader). A missing
/// parameter is not an error: the streamer has not checkpointed this slot yet.
async fn read_checkpoint(aws: &aws_config::SdkConfig, slot: &SlotConfig, h: &mut SlotHealth) {
    if !slot.checkpoint.enabled {
        return;
    }
    let store = SsmStore::new(ssm_client(aws, slot.region.as_deref()));
    let checkpoint = match store.read(&slot.checkpoint.parameter).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            h.errors.push(e.to_string());
            return;
        }
    };
    h.checkpoint_age_seconds = epoch_seconds(&serde_json::Value::String(checkpoint.time.clone()))
        .map(|written| (now_secs() - written).max(0.0));
    if h.checkpoint_age_seconds.is_none() {
        h.errors.push(format!(
            "checkpoint {}: time {:?} is not RFC 3339",
            slot.checkpoint.parameter, checkpoint.time
        ));
    }
    h.checkpoint_lsn = Some(checkpoint.lsn);
    h.checkpoint_time = Some(checkpoint.time);
}

/// Seconds since the epoch from an RFC 3339 string or a number of seconds (or
/// milliseconds, recognised by size).
fn epoch_seconds(v: &serde_json::Value) -> Option<f64> {
    match v {
        serde_json::Value::String(s) => DateTime::from_str(s, DateTimeFormat::DateTime)
            .ok()
            .map(|d| d.as_secs_f64()),
        serde_json::Value::Number(n) => n.as_f64().map(|x| if x > 1e11 { x / 1000.0 } else { x }),
        _ => None,
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The values for one slot: only those that are known, except `SlotActive`, which
/// is 0 whenever activity cannot be confirmed so that an unreachable server alarms.
fn datums(h: &SlotHealth) -> Vec<Datum> {
    let datum = |name, unit, value| Datum { name, unit, value };
    let mut out = vec![datum(
        METRIC_SLOT_ACTIVE,
        "Count",
        if h.active { 1.0 } else { 0.0 },
    )];
    if let Some(lag) = h.lag_bytes {
        out.push(datum(METRIC_REPLICATION_LAG_BYTES, "Bytes", lag as f64));
    }
    if let Some(retained) = h.retained_wal_bytes {
        out.push(datum(
            METRIC_SLOT_RETAINED_WAL_BYTES,
            "Bytes",
            retained as f64,
        ));
    }
    if let Some(age) = h.checkpoint_age_seconds {
        out.push(datum(METRIC_CHECKPOINT_AGE_SECONDS, "Seconds", age));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_rfc3339_and_epoch_checkpoint_times() {
        assert_eq!(
            epoch_seconds(&json!("2026-11-23T23:29:15Z")),
            Some(1_795_476_555.0)
        );
        assert_eq!(epoch_seconds(&json!(1_795_476_555)), Some(1_795_476_555.0));
        assert_eq!(
            epoch_seconds(&json!(1_795_476_555_500u64)),
            Some(1_795_476_555.5)
        );
        assert_eq!(epoch_seconds(&json!("yesterday")), None);
        assert_eq!(epoch_seconds(&json!(null)), None);
    }

    #[test]
    fn publishes_only_known_values_but_always_slot_active() {
        let unknown = SlotHealth {
            slot: "s".into(),
            ..SlotHealth::default()
        };
        let names: Vec<_> = datums(&unknown).iter().map(|d| d.name).collect();
        assert_eq!(names, [METRIC_SLOT_ACTIVE]);
        assert_eq!(datums(&unknown)[0].value, 0.0);

        let known = SlotHealth {
            slot: "s".into(),
            active: true,
            lag_bytes: Some(10),
            retained_wal_bytes: Some(20),
            checkpoint_age_seconds: Some(3.0),
            ..SlotHealth::default()
        };
        let d = datums(&known);
        assert_eq!(d.len(), 4);
        assert_eq!((d[0].name, d[0].value), (METRIC_SLOT_ACTIVE, 1.0));
        assert_eq!(
            (d[1].name, d[1].value),
            (METRIC_REPLICATION_LAG_BYTES, 10.0)
        );
        assert_eq!(
            (d[2].name, d[2].value),
            (METRIC_SLOT_RETAINED_WAL_BYTES, 20.0)
        );
        assert_eq!(
            (d[3].name, d[3].unit),
            (METRIC_CHECKPOINT_AGE_SECONDS, "Seconds")
        );
    }
}
