//! The admin Lambda's commands: `provision`, `health`, `drop` and `restart`, one
//! file each, and `backfill`; `restart` and `backfill` only write a signal for the
//! streamer (`crate::signal`).
//!
//! Owns the JSON event format (`{"action": "..."}`), where the admin Lambda finds
//! `configs.yml` (bundled, a path from the environment, or an SSM parameter) and the
//! per-slot reports it returns. It reuses the streamer's config, connection and slot
//! SQL ([`crate::config`], [`crate::source`]); it never streams changes, never
//! confirms an LSN, and never drops a slot unless asked by name, with a matching
//! confirmation, while the slot is inactive (and its streamer not seen lately,
//! unless forced); the only checkpoint it writes is the mark a drop leaves.

mod backfill;
mod drop;
mod emf;
mod health;
mod provision;
mod restart;

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::{Config, ConfigError, SlotConfig};
use crate::credentials::Credentials;
use crate::serve::EmfOut;
use crate::source::{self, ConnectParams};

pub use backfill::{backfill, BackfillReport};
pub use drop::{drop_slot, DropReport};
pub use health::{
    health, HealthReport, SlotHealth, DEFAULT_METRICS_NAMESPACE, METRIC_CHECKPOINT_AGE_SECONDS,
    METRIC_REPLICATION_LAG_BYTES, METRIC_SLOT_ACTIVE, METRIC_SLOT_RETAINED_WAL_BYTES,
};
pub use provision::{provision, ProvisionReport, SlotProvision};
pub use restart::{restart_slot, RestartReport};

/// Environment variable naming an SSM parameter that holds the whole `configs.yml`.
pub const ENV_CONFIG_SSM_PARAMETER: &str = "PG_CDC_CONFIG_SSM_PARAMETER";
/// Environment variable with the path of `configs.yml` (default: the bundled one).
pub const ENV_CONFIG_PATH: &str = "PG_CDC_CONFIG";
/// Environment variable overriding the CloudWatch namespace of the health metrics.
pub const ENV_METRICS_NAMESPACE: &str = "PG_CDC_METRICS_NAMESPACE";
/// The config bundled next to the Lambda's `bootstrap` (the working directory).
pub const BUNDLED_CONFIG_PATH: &str = "configs.yml";

/// One invocation's input, as JSON: `{"action": "provision"}`, `{"action": "health"}`,
/// `{"action": "drop", "slot": "x", "confirm": "x"}` (optionally `"force": true`) or
/// `{"action": "restart", "slot": "x"}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum AdminEvent {
    /// Check each slot's prerequisites and create the missing slots.
    Provision,
    /// Report each slot's state and publish it as CloudWatch metrics (EMF on stdout).
    Health,
    /// Drop one inactive slot; `confirm` must repeat the slot's name. `force` drops
    /// it even though its streamer was seen within `ready_retry_budget_secs`.
    Drop {
        slot: String,
        confirm: String,
        #[serde(default)]
        force: bool,
    },
    /// Ask the slot's running streamer to backfill `tables` (rows matching `where`).
    Backfill {
        slot: String,
        tables: Vec<String>,
        #[serde(rename = "where", default)]
        filter: Option<String>,
    },
    /// Ask the running streamer to start the slot's session again (a signal in the
    /// slot's database).
    Restart { slot: String },
}

/// What the commands need besides the config.
#[derive(Clone)]
pub struct AdminContext {
    /// For SSM (checkpoints) and Secrets Manager.
    pub aws: aws_config::SdkConfig,
    /// The CloudWatch namespace of the health metrics.
    pub namespace: String,
    /// Where `health` writes its EMF lines: stdout in the Lambda, a buffer in tests.
    pub metrics_out: EmfOut,
}

impl std::fmt::Debug for AdminContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminContext")
            .field("namespace", &self.namespace)
            .finish_non_exhaustive()
    }
}

impl AdminContext {
    /// The namespace from [`ENV_METRICS_NAMESPACE`], else [`DEFAULT_METRICS_NAMESPACE`];
    /// metrics on stdout.
    pub fn from_env(aws: aws_config::SdkConfig) -> Self {
        let namespace = std::env::var(ENV_METRICS_NAMESPACE)
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_METRICS_NAMESPACE.to_string());
        AdminContext {
            aws,
            namespace,
            metrics_out: std::sync::Arc::new(std::sync::Mutex::new(std::io::stdout())),
        }
    }
}

/// Why an invocation failed as a whole (per-slot problems are in the report instead).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid event {event}: {reason}; send {{\"action\":\"provision\"}}, {{\"action\":\"health\"}}, {{\"action\":\"drop\",\"slot\":\"NAME\",\"confirm\":\"NAME\"}}, {{\"action\":\"restart\",\"slot\":\"NAME\"}} or {{\"action\":\"backfill\",\"slot\":\"NAME\",\"tables\":[\"schema.table\"]}}")]
    BadEvent { event: String, reason: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("SSM parameter {name}: {reason}; check that it exists, holds configs.yml, and that the Lambda's role may ssm:GetParameter it")]
    ConfigParameter { name: String, reason: String },
    #[error("cannot write the health metrics (EMF lines) to stdout: {reason}")]
    Metrics { reason: String },
    #[error("cannot serialize the report: {0}")]
    Report(#[from] serde_json::Error),
}

/// Run one event against `config`; returns the command's report as JSON.
pub async fn handle(
    config: &Config,
    ctx: &AdminContext,
    event: serde_json::Value,
) -> Result<serde_json::Value, AdminError> {
    let text = event.to_string();
    let event: AdminEvent = serde_json::from_value(event).map_err(|e| AdminError::BadEvent {
        event: text,
        reason: e.to_string(),
    })?;
    tracing::info!(?event, slots = config.slots.len(), "admin command");
    Ok(match event {
        AdminEvent::Provision => serde_json::to_value(provision(config, &ctx.aws).await)?,
        AdminEvent::Health => serde_json::to_value(health(config, ctx).await?)?,
        AdminEvent::Drop {
            slot,
            confirm,
            force,
        } => serde_json::to_value(drop_slot(config, &ctx.aws, &slot, &confirm, force).await)?,
        AdminEvent::Backfill {
            slot,
            tables,
            filter,
        } => serde_json::to_value(backfill(config, &ctx.aws, &slot, tables, filter).await)?,
        AdminEvent::Restart { slot } => {
            serde_json::to_value(restart_slot(config, &ctx.aws, &slot).await)?
        }
    })
}

/// Where the config comes from, decided by the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// An SSM parameter (String or SecureString) holding the whole file.
    SsmParameter(String),
    /// A file: [`ENV_CONFIG_PATH`] or the bundled [`BUNDLED_CONFIG_PATH`].
    Path(PathBuf),
}

impl ConfigSource {
    /// [`ENV_CONFIG_SSM_PARAMETER`] wins over [`ENV_CONFIG_PATH`]; without either,
    /// the bundled file (in `LAMBDA_TASK_ROOT`, else the working directory).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let set = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        if let Some(name) = set(ENV_CONFIG_SSM_PARAMETER) {
            ConfigSource::SsmParameter(name)
        } else if let Some(path) = set(ENV_CONFIG_PATH) {
            ConfigSource::Path(PathBuf::from(path))
        } else {
            // Lambda unpacks the zip into LAMBDA_TASK_ROOT (/var/task).
            let root = set("LAMBDA_TASK_ROOT")
                .map(PathBuf::from)
                .unwrap_or_default();
            ConfigSource::Path(root.join(BUNDLED_CONFIG_PATH))
        }
    }

    /// Read and validate the config. An SSM parameter is read on every call, so an
    /// edited parameter takes effect at the next invocation without a redeploy.
    pub async fn load(&self, aws: &aws_config::SdkConfig) -> Result<Config, AdminError> {
        match self {
            ConfigSource::Path(path) => Ok(Config::load(path)?),
            ConfigSource::SsmParameter(name) => {
                let err = |reason: String| AdminError::ConfigParameter {
                    name: name.clone(),
                    reason,
                };
                let out = aws_sdk_ssm::Client::new(aws)
                    .get_parameter()
                    .name(name)
                    .with_decryption(true)
                    .send()
                    .await
                    .map_err(|e| {
                        err(crate::telemetry::aws_error(
                            "SSM",
                            "GetParameter",
                            &e,
                            "the parameter name and that the role may call ssm:GetParameter on it (and kms:Decrypt for a SecureString)",
                        ))
                    })?;
                let text = out
                    .parameter()
                    .and_then(|p| p.value())
                    .ok_or_else(|| err("the parameter has no value".into()))?;
                // Config::load reads a file and names it in every message; a file
                // named after the parameter makes those messages point at the
                // parameter. Lambda's /tmp is writable.
                let file = std::env::temp_dir().join(ssm_file_name(name));
                std::fs::write(&file, text)
                    .map_err(|e| err(format!("cannot write {}: {e}", file.display())))?;
                let loaded = Config::load(&file);
                let _ = std::fs::remove_file(&file);
                Ok(loaded?)
            }
        }
    }
}

/// `/a/b/configs` → `ssm-a-b-configs.yml`: a safe file name that still names the
/// parameter in error messages.
fn ssm_file_name(name: &str) -> String {
    let cleaned: String = name
        .trim_start_matches('/')
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("ssm-{cleaned}.yml")
}

/// A per-slot check result as the reports show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// What was checked, e.g. `wal_level`.
    pub check: String,
    pub ok: bool,
    /// What was found, or what is wrong and how to fix it.
    pub detail: String,
}

impl Finding {
    fn new(check: &str, result: Result<String, String>) -> Self {
        let (ok, detail) = match result {
            Ok(d) => (true, d),
            Err(d) => (false, d),
        };
        Finding {
            check: check.to_string(),
            ok,
            detail,
        }
    }
}

/// The configured slot named `name`, if any.
fn find_slot<'a>(config: &'a Config, name: &str) -> Option<&'a crate::config::SlotConfig> {
    config.slots.iter().find(|s| s.name == name)
}

/// Connect to a slot's database as the streamer does: the config's values filled from
/// the slot's secret, or an IAM token as the password. Also returns how reports name
/// the server (no secrets), whether or not the connection worked.
pub(crate) async fn connect(
    slot: &SlotConfig,
    aws: &aws_config::SdkConfig,
) -> (String, Result<tokio_postgres::Client, String>) {
    match Credentials::new(slot, aws).connect_params().await {
        Ok(params) => (
            params.endpoint(),
            source::sql_connect(&params)
                .await
                .map_err(|e| e.to_string()),
        ),
        Err(e) => (
            ConnectParams::from_slot(slot).endpoint(),
            Err(e.to_string()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_three_events() {
        let p: AdminEvent = serde_json::from_value(json!({"action": "provision"})).unwrap();
        assert_eq!(p, AdminEvent::Provision);
        let h: AdminEvent = serde_json::from_value(json!({"action": "health"})).unwrap();
        assert_eq!(h, AdminEvent::Health);
        let d: AdminEvent =
            serde_json::from_value(json!({"action": "drop", "slot": "a", "confirm": "b"})).unwrap();
        assert_eq!(
            d,
            AdminEvent::Drop {
                slot: "a".into(),
                confirm: "b".into(),
                force: false,
            }
        );
        let forced: AdminEvent = serde_json::from_value(
            json!({"action": "drop", "slot": "a", "confirm": "a", "force": true}),
        )
        .unwrap();
        assert!(matches!(forced, AdminEvent::Drop { force: true, .. }));
        let r: AdminEvent =
            serde_json::from_value(json!({"action": "restart", "slot": "a"})).unwrap();
        assert_eq!(r, AdminEvent::Restart { slot: "a".into() });
    }

    #[test]
    fn rejects_unknown_actions_and_incomplete_drops() {
        for bad in [
            json!({"action": "destroy"}),
            json!({}),
            json!({"action": "drop", "slot": "a"}),
            json!({"action": "restart"}),
            json!("health"),
        ] {
            assert!(
                serde_json::from_value::<AdminEvent>(bad.clone()).is_err(),
                "{bad} should be rejected"
            );
        }
    }

    #[test]
    fn config_source_prefers_ssm_then_path_then_bundled() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            ConfigSource::from_lookup(&env(&[
                (ENV_CONFIG_SSM_PARAMETER, "/p/c"),
                (ENV_CONFIG_PATH, "/x.yml")
            ])),
            ConfigSource::SsmParameter("/p/c".into())
        );
        assert_eq!(
            ConfigSource::from_lookup(&env(&[(ENV_CONFIG_PATH, "/x.yml")])),
            ConfigSource::Path("/x.yml".into())
        );
        assert_eq!(
            ConfigSource::from_lookup(&env(&[(ENV_CONFIG_SSM_PARAMETER, " ")])),
            ConfigSource::Path(BUNDLED_CONFIG_PATH.into())
        );
        assert_eq!(
            ConfigSource::from_lookup(&env(&[("LAMBDA_TASK_ROOT", "/var/task")])),
            ConfigSource::Path("/var/task/configs.yml".into())
        );
    }

    #[test]
    fn ssm_file_name_is_a_plain_file_name() {
        assert_eq!(
            ssm_file_name("/pg-cdc/prod/configs"),
            "ssm-pg-cdc-prod-configs.yml"
        );
        assert!(!ssm_file_name("../../etc/x").contains('/'));
    }
}
