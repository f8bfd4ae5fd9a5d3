//! Database credentials for a slot: the config's password, a Secrets Manager secret,
//! or an RDS IAM token, turned into the [`ConnectParams`] a session connects with.
//!
//! Owns fetching and caching secrets, refetching after an authentication failure
//! (rotation), and renewing IAM tokens before they expire. It never logs, formats or
//! returns a password or token outside a [`Secret`], and never retries by itself:
//! the pipeline decides, using [`CredentialsError::is_transient`].
//!
//! - `secret`: fetching a secret and reading RDS-style JSON or plain-text values.
//! - `iam`: the SigV4-presigned `rds-db:connect` token.

pub mod iam;
pub mod secret;

use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use tokio::sync::Mutex;

use crate::config::{Secret, SlotConfig, SslMode, DEFAULT_PORT};
use crate::source::ConnectParams;
use secret::SecretValue;

/// Sign a new IAM token when the cached one is this old: well inside its 15 minutes,
/// so a slow connect never presents an expired token.
pub const IAM_TOKEN_REFRESH_AFTER: Duration = Duration::from_secs(600);

/// Why a slot's credentials could not be assembled.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("slot {slot:?}: cannot fetch secret {secret:?} from Secrets Manager: {reason}")]
    Fetch {
        slot: String,
        secret: String,
        reason: String,
        transient: bool,
    },
    #[error("slot {slot:?}: secret {secret:?}: {reason}")]
    Format {
        slot: String,
        secret: String,
        reason: String,
    },
    #[error(
        "slot {slot:?}: no `{key}`: set it in the config or put `{field}` in the secret {secret:?}"
    )]
    Missing {
        slot: String,
        key: &'static str,
        field: &'static str,
        secret: String,
    },
    #[error("slot {slot:?}: cannot create an RDS IAM token: {reason}")]
    Iam {
        slot: String,
        reason: String,
        transient: bool,
    },
}

impl CredentialsError {
    /// True when trying again later may succeed without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            CredentialsError::Fetch { transient, .. } | CredentialsError::Iam { transient, .. } => {
                *transient
            }
            CredentialsError::Format { .. } | CredentialsError::Missing { .. } => false,
        }
    }
}

/// One slot's credential source. Shared by its sessions; cheap to call per connect.
pub struct Credentials {
    slot: SlotConfig,
    secrets: Option<aws_sdk_secretsmanager::Client>,
    aws: aws_config::SdkConfig,
    cached_secret: Mutex<Option<SecretValue>>,
    cached_token: Mutex<Option<(Secret, Instant, String)>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("slot", &self.slot.name)
            .field("secret", &self.slot.secret)
            .field("iam_auth", &self.slot.iam_auth)
            .finish()
    }
}

impl Credentials {
    /// `aws` supplies the Secrets Manager client (region, endpoint, credentials) and the
    /// credentials that sign IAM tokens.
    pub fn new(slot: &SlotConfig, aws: &aws_config::SdkConfig) -> Credentials {
        let secrets = slot.secret.as_ref().map(|_| {
            let mut b = aws_sdk_secretsmanager::config::Builder::from(aws);
            if let Some(region) = secret_region(slot) {
                b = b.region(aws_sdk_secretsmanager::config::Region::new(region));
            }
            aws_sdk_secretsmanager::Client::from_conf(b.build())
        });
        Credentials {
            slot: slot.clone(),
            secrets,
            aws: aws.clone(),
            cached_secret: Mutex::new(None),
            cached_token: Mutex::new(None),
        }
    }

    /// The AWS settings the slot's clients are built from.
    pub fn aws(&self) -> &aws_config::SdkConfig {
        &self.aws
    }

    /// The parameters to connect with now: config values, filled from the (cached)
    /// secret, with a fresh-enough IAM token as the password when `iam_auth` is on.
    pub async fn connect_params(&self) -> Result<ConnectParams, CredentialsError> {
        let mut p = ConnectParams::from_slot(&self.slot);
        if let Some(id) = &self.slot.secret {
            let value = self.secret_value(id).await?;
            fill(&mut p, &self.slot, id, value)?;
        }
        if self.slot.iam_auth {
            // The load-time rule again, for a host that came from the secret.
            if !self.slot.iam_token_to_unverified_server {
                let problem = crate::config::iam_peer_problem(
                    p.sslmode,
                    &p.host,
                    p.hostaddr,
                    p.sslrootcert.as_deref(),
                );
                if let Some(reason) = problem {
                    return Err(CredentialsError::Iam {
                        slot: self.slot.name.clone(),
                        reason,
                        transient: false,
                    });
                }
            }
            // RDS refuses IAM tokens in plaintext; never send one unencrypted.
            if !p.sslmode.requires_tls() {
                p.sslmode = SslMode::Require.max(p.sslmode);
            }
            p.password = Some(self.iam_token(&p).await?);
        }
        Ok(p)
    }

    /// After the server refused the credentials: fetch the secret again. True when it
    /// changed (a rotation), so reconnecting right away is worth it.
    pub async fn refresh_after_auth_failure(&self) -> Result<bool, CredentialsError> {
        if self.slot.iam_auth {
            *self.cached_token.lock().await = None;
        }
        let Some(id) = &self.slot.secret else {
            return Ok(self.slot.iam_auth);
        };
        let before = self.cached_secret.lock().await.take();
        let after = self.secret_value(id).await?;
        let changed = before.as_ref() != Some(&after);
        tracing::info!(slot = %self.slot.name, secret = %id, changed, "authentication failed: fetched the secret again");
        Ok(changed)
    }

    async fn secret_value(&self, id: &str) -> Result<SecretValue, CredentialsError> {
        let mut cached = self.cached_secret.lock().await;
        if let Some(v) = cached.as_ref() {
            return Ok(v.clone());
        }
        let Some(client) = &self.secrets else {
            return Err(CredentialsError::Fetch {
                slot: self.slot.name.clone(),
                secret: id.to_string(),
                reason: "no Secrets Manager client".into(),
                transient: false,
            });
        };
        let text = secret::fetch(client, id)
            .await
            .map_err(|e| CredentialsError::Fetch {
                slot: self.slot.name.clone(),
                secret: id.to_string(),
                reason: e.reason,
                transient: e.transient,
            })?;
        let value = secret::parse(&text).map_err(|reason| CredentialsError::Format {
            slot: self.slot.name.clone(),
            secret: id.to_string(),
            reason,
        })?;
        *cached = Some(value.clone());
        Ok(value)
    }

    async fn iam_token(&self, p: &ConnectParams) -> Result<Secret, CredentialsError> {
        let iam_err = |reason: String, transient: bool| CredentialsError::Iam {
            slot: self.slot.name.clone(),
            reason,
            transient,
        };
        let target = format!("{}:{}:{}", p.host, p.port, p.user);
        let mut cached = self.cached_token.lock().await;
        if let Some((token, at, for_target)) = cached.as_ref() {
            if at.elapsed() < IAM_TOKEN_REFRESH_AFTER && *for_target == target {
                return Ok(token.clone());
            }
        }
        let region = self
            .slot
            .region
            .clone()
            .or_else(|| self.aws.region().map(|r| r.to_string()))
            .ok_or_else(|| {
                iam_err(
                    "no AWS region: set the slot's `region` or AWS_REGION".into(),
                    false,
                )
            })?;
        let provider = self.aws.credentials_provider().ok_or_else(|| {
            iam_err(
                "no AWS credentials are configured for signing".into(),
                false,
            )
        })?;
        let creds = provider
            .provide_credentials()
            .await
            .map_err(|e| iam_err(format!("cannot load AWS credentials: {e}"), true))?;
        let token = iam::auth_token(&p.host, p.port, &p.user, &region, &creds, SystemTime::now())
            .map_err(|r| iam_err(r, false))?;
        *cached = Some((token.clone(), Instant::now(), target));
        Ok(token)
    }
}

/// Region for Secrets Manager: the one in an ARN (`arn:aws:secretsmanager:REGION:...`),
/// else the slot's, else the SDK default.
fn secret_region(slot: &SlotConfig) -> Option<String> {
    let id = slot.secret.as_deref()?;
    if id.starts_with("arn:") {
        if let Some(region) = id.split(':').nth(3).filter(|r| !r.is_empty()) {
            return Some(region.to_string());
        }
    }
    slot.region.clone()
}

/// The config wins for every key it sets; the secret fills the rest. The port from
/// the secret is used unless the config sets one other than the default.
fn fill(
    p: &mut ConnectParams,
    slot: &SlotConfig,
    id: &str,
    v: SecretValue,
) -> Result<(), CredentialsError> {
    let missing = |key, field| CredentialsError::Missing {
        slot: slot.name.clone(),
        key,
        field,
        secret: id.to_string(),
    };
    if p.host.is_empty() {
        p.host = v.host.ok_or_else(|| missing("host", "host"))?;
        p.sslmode = SslMode::resolve(slot.sslmode, &p.host);
    }
    if p.user.is_empty() {
        p.user = v.username.ok_or_else(|| missing("user", "username"))?;
    }
    if p.dbname.is_empty() {
        p.dbname = v.dbname.ok_or_else(|| missing("db_name", "dbname"))?;
    }
    if let (Some(port), true) = (v.port, slot.port == DEFAULT_PORT) {
        p.port = port;
    }
    if v.password.is_some() {
        p.password = v.password;
    }
    Ok(())
}
