//! The operating keys: metrics (`metrics_namespace`, `metrics_interval_secs`,
//! `metrics_emf`), the HTTP endpoints (`http_listen`, `ready_retry_budget_secs`),
//! WAL safety (`wal_lag_warn_bytes`) at the top level, and a slot's
//! `heartbeat_interval_secs`.
//!
//! Owns their defaults and value rules. It never binds a port or connects.

use std::net::SocketAddr;

use super::file::{ConfigFile, SlotFile, Value};
use super::value::{number, text};
use super::{ConfigError, Source};

/// `metrics_namespace` default.
pub const DEFAULT_METRICS_NAMESPACE: &str = "PgCdcToKinesis";
/// CloudWatch namespaces are 1..=255 characters.
pub const MAX_METRICS_NAMESPACE_LEN: usize = 255;
/// `metrics_interval_secs` default: CloudWatch's standard resolution.
pub const DEFAULT_METRICS_INTERVAL_SECS: u64 = 60;
/// `metrics_interval_secs` upper bound.
pub const MAX_METRICS_INTERVAL_SECS: u64 = 3600;
/// `metrics_emf` default.
pub const DEFAULT_METRICS_EMF: bool = true;
/// `http_listen` default: every interface, so a load balancer or Prometheus can
/// reach it from outside the container.
pub const DEFAULT_HTTP_LISTEN: &str = "0.0.0.0:8080";
/// `ready_retry_budget_secs` default.
pub const DEFAULT_READY_RETRY_BUDGET_SECS: u64 = 120;
/// `ready_retry_budget_secs` upper bound (one day).
pub const MAX_READY_RETRY_BUDGET_SECS: u64 = 86_400;
/// `wal_lag_warn_bytes` default: 1 GiB.
pub const DEFAULT_WAL_LAG_WARN_BYTES: u64 = 1 << 30;
/// `wal_lag_warn_bytes` upper bound: 1 PiB.
pub const MAX_WAL_LAG_WARN_BYTES: u64 = 1 << 50;
/// `heartbeat_interval_secs` upper bound (one day).
pub const MAX_HEARTBEAT_INTERVAL_SECS: u64 = 86_400;

/// How the service reports on itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpsConfig {
    /// CloudWatch namespace of the EMF metrics.
    pub metrics_namespace: String,
    /// Seconds between metric lines.
    pub metrics_interval_secs: u64,
    /// Write EMF lines on stdout.
    pub metrics_emf: bool,
    /// Where `/healthz`, `/readyz` and `/metrics` listen; port 0 picks a free port.
    pub http_listen: SocketAddr,
    /// A slot retrying for longer than this makes `/readyz` answer 503.
    pub ready_retry_budget_secs: u64,
    /// Warn when a slot's replication lag passes this many bytes.
    pub wal_lag_warn_bytes: u64,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            metrics_namespace: DEFAULT_METRICS_NAMESPACE.to_string(),
            metrics_interval_secs: DEFAULT_METRICS_INTERVAL_SECS,
            metrics_emf: DEFAULT_METRICS_EMF,
            http_listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            ready_retry_budget_secs: DEFAULT_READY_RETRY_BUDGET_SECS,
            wal_lag_warn_bytes: DEFAULT_WAL_LAG_WARN_BYTES,
        }
    }
}

fn place(key: &str) -> String {
    format!("top level, key `{key}`")
}

pub(super) fn build(
    src: &Source<'_>,
    typed: &ConfigFile,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<OpsConfig, ConfigError> {
    let d = OpsConfig::default();
    let num = |key: &str, v: &Option<Value>, default: u64, min: u64, max: u64| match v {
        None => Ok(default),
        Some(v) => number(src, v, &place(key), min, max),
    };
    let metrics_namespace = match &typed.metrics_namespace {
        None => d.metrics_namespace,
        Some(v) => {
            let ns = text(src, v, &place("metrics_namespace"), lookup)?;
            // CloudWatch: 1-255 ASCII characters, not starting with ':'.
            let valid = !ns.is_empty()
                && ns.len() <= MAX_METRICS_NAMESPACE_LEN
                && ns.chars().all(|c| c.is_ascii_graphic() || c == ' ')
                && !ns.starts_with(':');
            if !valid {
                return Err(src.at(
                    v,
                    format!(
                        "{}: `{ns}` is not a CloudWatch namespace; use 1 to {MAX_METRICS_NAMESPACE_LEN} \
                         printable ASCII characters, e.g. `{DEFAULT_METRICS_NAMESPACE}`",
                        place("metrics_namespace")
                    ),
                ));
            }
            ns
        }
    };
    let metrics_emf = src.flag(&typed.metrics_emf, &place("metrics_emf"), d.metrics_emf)?;
    let http_listen = match &typed.http_listen {
        None => d.http_listen,
        Some(v) => {
            let addr = text(src, v, &place("http_listen"), lookup)?;
            addr.trim().parse::<SocketAddr>().map_err(|_| {
                src.at(
                    v,
                    format!(
                        "{}: `{addr}` is not an IP address and port; write e.g. `{DEFAULT_HTTP_LISTEN}`, \
                         `127.0.0.1:9090` or `[::]:8080` (port 0 picks a free port)",
                        place("http_listen")
                    ),
                )
            })?
        }
    };
    Ok(OpsConfig {
        metrics_namespace,
        metrics_interval_secs: num(
            "metrics_interval_secs",
            &typed.metrics_interval_secs,
            DEFAULT_METRICS_INTERVAL_SECS,
            1,
            MAX_METRICS_INTERVAL_SECS,
        )?,
        metrics_emf,
        http_listen,
        ready_retry_budget_secs: num(
            "ready_retry_budget_secs",
            &typed.ready_retry_budget_secs,
            DEFAULT_READY_RETRY_BUDGET_SECS,
            0,
            MAX_READY_RETRY_BUDGET_SECS,
        )?,
        wal_lag_warn_bytes: num(
            "wal_lag_warn_bytes",
            &typed.wal_lag_warn_bytes,
            DEFAULT_WAL_LAG_WARN_BYTES,
            1,
            MAX_WAL_LAG_WARN_BYTES,
        )?,
    })
}

/// A slot's `heartbeat_interval_secs`: `None` = no heartbeats (the default).
pub(super) fn heartbeat(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
) -> Result<Option<u64>, ConfigError> {
    raw.heartbeat_interval_secs
        .as_ref()
        .map(|v| {
            number(
                src,
                v,
                &place("heartbeat_interval_secs"),
                1,
                MAX_HEARTBEAT_INTERVAL_SECS,
            )
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_listen_address_parses() {
        assert_eq!(
            DEFAULT_HTTP_LISTEN.parse::<SocketAddr>().ok(),
            Some(OpsConfig::default().http_listen)
        );
    }
}
