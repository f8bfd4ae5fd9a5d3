//! The pipeline: one slot's worker, never blocking another slot's.
//!
//! Owns the life of one slot: sessions (`session`), reconnecting with capped,
//! jittered backoff after transient failures, stopping a slot with an actionable
//! error after a permanent one (and trying it again later, `restart`), restarting
//! on request, and shutdown. It is the one place that classifies an error as retry
//! or stop. The set of workers and the process-level outcome are [`crate::run`]'s.

pub(crate) mod catalog;
pub(crate) mod preflight;
mod reader;
pub(crate) mod restart;
mod session;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use tokio::sync::watch;

use crate::config::SlotConfig;
use crate::decode::DecodeError;
use crate::lsn::Lsn;
use crate::sink::kinesis::{SinkError, SinkStats};
use crate::source::SourceError;
use session::{Session, SessionEnd};

/// Reconnect backoff: from 1 s doubling to 60 s, with jitter.
const RECONNECT_BASE: Duration = Duration::from_secs(1);
const RECONNECT_MAX: Duration = Duration::from_secs(60);

/// Why a slot stopped or must reconnect.
#[derive(Debug, thiserror::Error)]
pub enum SlotError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("{0}; this is a bug in the wal2json decoder or an unsupported wal2json version: report it with this message")]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    RecordTooLarge(#[from] crate::record::oversize::OversizeError),
    #[error("replication slot {slot:?} does not exist on {endpoint} and create_slot is false: create it with SELECT pg_create_logical_replication_slot('{slot}', 'wal2json'), or set create_slot: true")]
    SlotMissing { slot: String, endpoint: String },
    #[error("replication slot {slot:?} uses the output plugin {plugin}, not wal2json: drop it or pick another slot name")]
    WrongPlugin { slot: String, plugin: String },
    #[error("replication slot {slot:?} belongs to database {database:?}, but this slot connects to database {configured:?} (db_name, or dbname from the secret): a logical slot only decodes the database it was created in; set db_name: {database}, or pick another slot name (replication slot names are shared by all databases of a server)")]
    WrongDatabase {
        slot: String,
        database: String,
        configured: String,
    },
    #[error("slot {slot:?}: no AWS region for Kinesis: set region for the slot in the config, or AWS_REGION in the environment (the replication slot was not created)")]
    NoRegion { slot: String },
    #[error("replication slot {slot:?} is lost (invalidated: the server removed WAL it still needed); changes since its last confirmed position are gone from the server: drop and re-create the slot, then backfill the tables")]
    SlotLost { slot: String },
    #[error("the server sent nothing for {secs}s although asked to reply: the connection looks dead; reconnecting")]
    Silent { secs: u64 },
    #[error("internal error: {0}")]
    Internal(String),
    #[error(transparent)]
    Unkeyed(#[from] crate::record::UnkeyedChange),
    #[error("slot {slot:?}: {source}")]
    IdentityLacksKey {
        slot: String,
        source: crate::source::IdentityLacksKey,
    },
    #[error(transparent)]
    CheckpointGap(#[from] crate::checkpoint::startup::CheckpointGap),
    #[error(transparent)]
    Credentials(#[from] crate::credentials::CredentialsError),
    #[error(transparent)]
    Catalog(#[from] catalog::CatalogError),
}

impl SlotError {
    /// The one classification: true when reconnecting may help.
    pub fn is_transient(&self) -> bool {
        match self {
            SlotError::Source(e) => e.is_transient(),
            SlotError::Sink(e) => e.is_transient(),
            SlotError::Credentials(e) => e.is_transient(),
            SlotError::Catalog(e) => e.is_transient(),
            SlotError::Internal(_) | SlotError::Silent { .. } => true,
            SlotError::Decode(_)
            | SlotError::RecordTooLarge(_)
            | SlotError::SlotMissing { .. }
            | SlotError::WrongPlugin { .. }
            | SlotError::WrongDatabase { .. }
            | SlotError::NoRegion { .. }
            | SlotError::SlotLost { .. }
            | SlotError::CheckpointGap(_)
            | SlotError::Unkeyed(_)
            | SlotError::IdentityLacksKey { .. } => false,
        }
    }

    /// A short, fixed name for the kind of failure, safe to show to anyone (the
    /// unauthenticated `/readyz`): never row data, names or server text, which stay
    /// in the logs.
    pub fn class(&self) -> &'static str {
        match self {
            SlotError::Source(e) => match e {
                _ if e.is_auth_failure() => "postgres_auth",
                SourceError::Connect { .. }
                | SourceError::Io { .. }
                | SourceError::Closed { .. } => "postgres_connection",
                SourceError::StreamEnded { .. } => "postgres_stream_ended",
                SourceError::Tls { .. } | SourceError::TlsUnavailable { .. } => "postgres_tls",
                SourceError::Protocol { .. } => "postgres_protocol",
                SourceError::InvalidInput(_) => "invalid_input",
                SourceError::Server { .. } => "postgres_error",
                SourceError::Sql { source, .. } if source.as_db_error().is_some() => {
                    "postgres_error"
                }
                SourceError::Sql { .. } => "postgres_connection",
                SourceError::Auth { .. } => "postgres_auth",
            },
            SlotError::Sink(_) => "kinesis",
            SlotError::Decode(_) => "decode",
            SlotError::RecordTooLarge(_) => "record_too_large",
            SlotError::SlotMissing { .. } => "slot_missing",
            SlotError::WrongPlugin { .. } => "wrong_plugin",
            SlotError::SlotLost { .. } => "slot_lost",
            SlotError::Silent { .. } => "postgres_silent",
            SlotError::Internal(_) => "internal",
            SlotError::CheckpointGap(_) => "checkpoint_gap",
            SlotError::Credentials(_) => "credentials",
            SlotError::Catalog(_) => "catalog_lookup",
            SlotError::Unkeyed(_) => "change_without_key",
            SlotError::IdentityLacksKey { .. } => "identity_lacks_key",
            SlotError::WrongDatabase { .. } => "wrong_database",
            SlotError::NoRegion { .. } => "no_region",
        }
    }
}

/// Where a slot's worker is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Starting,
    Streaming,
    /// Reconnecting after a transient failure.
    Retrying {
        error: String,
    },
    /// Stopped for good after a permanent failure.
    Stopped {
        error: String,
    },
    /// Shut down on request.
    Finished,
}

/// A slot's state, readable from other tasks (health endpoint, tests).
#[derive(Debug)]
pub struct SlotStatus {
    pub slot: String,
    /// The state, and [`SlotError::class`] of the failure behind `Retrying`/`Stopped`.
    state: Mutex<(SlotState, Option<&'static str>)>,
    pub stats: Arc<SinkStats>,
    /// Observed values for metrics and readiness (`crate::metrics`).
    pub metrics: crate::metrics::SlotMetrics,
    /// Checkpoint age, failures and accepted gaps (`crate::checkpoint`).
    pub checkpoint: Arc<crate::checkpoint::CheckpointStats>,
    /// How to connect (config, secret, IAM token), shared with the slot's monitor so
    /// both use one cached secret.
    pub credentials: Arc<crate::credentials::Credentials>,
    /// Where this process created the replication slot, if it did: a slot stopped
    /// for good names it, because it keeps holding WAL.
    created_at: Mutex<Option<Lsn>>,
}

impl SlotStatus {
    pub(crate) fn new(slot: &str, credentials: Arc<crate::credentials::Credentials>) -> Self {
        SlotStatus {
            credentials,
            slot: slot.to_string(),
            state: Mutex::new((SlotState::Starting, None)),
            stats: Arc::default(),
            metrics: Default::default(),
            checkpoint: Arc::default(),
            created_at: Mutex::new(None),
        }
    }

    /// This process created the replication slot at `at`.
    fn slot_created(&self, at: Lsn) {
        if let Ok(mut c) = self.created_at.lock() {
            *c = Some(at);
        }
    }

    /// The stop message for `e`: a slot this process created is left on the server
    /// holding WAL, and the message says so and how to drop it.
    fn stop_message(&self, e: &SlotError) -> String {
        match self.created_at.lock().ok().and_then(|c| *c) {
            Some(at) => format!(
                "{e}; the replication slot {slot:?} was created by this process at {at} and is left on the server, holding WAL from there on: fix the problem and start again soon, or drop it with SELECT pg_drop_replication_slot('{slot}')",
                slot = self.slot
            ),
            None => e.to_string(),
        }
    }

    pub fn state(&self) -> SlotState {
        self.state_and_class().0
    }

    /// The state with the short class of its error (for `Retrying` and `Stopped`).
    pub fn state_and_class(&self) -> (SlotState, Option<&'static str>) {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or((SlotState::Starting, None))
    }

    fn set(&self, state: SlotState) {
        self.set_with_class(state, None);
    }

    fn set_with_class(&self, state: SlotState, class: Option<&'static str>) {
        if let Ok(mut s) = self.state.lock() {
            self.metrics
                .note_retrying(matches!(state, SlotState::Retrying { .. }));
            *s = (state, class);
        }
    }
}

/// The Kinesis client of one slot (`run` and `check` use the same settings).
pub(crate) fn kinesis_client(
    aws: &aws_config::SdkConfig,
    slot: &SlotConfig,
) -> aws_sdk_kinesis::Client {
    let mut builder = aws_sdk_kinesis::config::Builder::from(aws)
        // The sink retries with its own per-record logic and order rules; SDK-level
        // retries would hide throttling and resend whole requests.
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .timeout_config(
            aws_sdk_kinesis::config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(region) = &slot.region {
        builder = builder.region(aws_sdk_kinesis::config::Region::new(region.clone()));
    }
    aws_sdk_kinesis::Client::from_conf(builder.build())
}

pub(crate) struct Worker {
    pub(crate) slot: SlotConfig,
    pub(crate) credentials: Arc<crate::credentials::Credentials>,
    pub(crate) kinesis: aws_sdk_kinesis::Client,
    pub(crate) checkpoints: crate::checkpoint::Checkpointer,
    pub(crate) status: Arc<SlotStatus>,
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) timeout: Duration,
    /// `stopped_slot_retry_secs`: the cap of the wait before a stopped slot is tried
    /// again; 0 = never.
    pub(crate) stopped_retry_secs: u64,
    pub(crate) restarts: Arc<restart::Restarts>,
    /// Woken by a `restart` signal for this slot.
    pub(crate) wake: Arc<tokio::sync::Notify>,
}

impl Worker {
    /// Ok when stopped by request; Err(message) when stopped for good.
    pub(crate) async fn run(mut self) -> Result<(), String> {
        let name = self.slot.name.clone();
        let mut attempt: u32 = 0;
        // Tries since the slot stopped on a permanent error.
        let mut stops: u32 = 0;
        loop {
            if *self.shutdown.borrow() {
                self.status.set(SlotState::Finished);
                return Ok(());
            }
            let session = Session {
                slot: &self.slot,
                credentials: &self.credentials,
                kinesis: self.kinesis.clone(),
                checkpoints: &self.checkpoints,
                status: &self.status,
                stats: self.status.stats.clone(),
                shutdown: self.shutdown.clone(),
                shutdown_timeout: self.timeout,
                restarts: &self.restarts,
                wake: &self.wake,
            };
            let result = tokio::select! {
                r = session.run() => r,
                // Shutdown while connecting or preparing: nothing is in flight yet.
                _ = wait_for_shutdown_before_streaming(&mut self.shutdown, &self.status) => Ok(SessionEnd::Shutdown),
            };
            match result {
                Ok(SessionEnd::Shutdown) => {
                    self.status.set(SlotState::Finished);
                    return Ok(());
                }
                Ok(SessionEnd::Restart) => {
                    attempt = 0;
                    stops = 0;
                    tracing::info!(slot = %name, "[{name}] restarting on request");
                }
                Err(e) if e.is_transient() => {
                    // A session that got as far as streaming proves the set-up works:
                    // the next fault (a restart minutes later) starts again from the
                    // shortest delay. Failures before streaming keep growing it.
                    if self.status.state() == SlotState::Streaming {
                        attempt = 0;
                    }
                    let delay = reconnect_delay(attempt);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(slot = %name, retry_in = %crate::telemetry::secs(delay), "[{name}] {e}; reconnecting");
                    self.status.set_with_class(
                        SlotState::Retrying {
                            error: e.to_string(),
                        },
                        Some(e.class()),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.changed() => {}
                        _ = self.wake.notified() => {
                            tracing::info!(slot = %name, "[{name}] restart requested: reconnecting now");
                        }
                    }
                }
                Err(e) => {
                    let error = self.status.stop_message(&e);
                    self.status.set_with_class(
                        SlotState::Stopped {
                            error: error.clone(),
                        },
                        Some(e.class()),
                    );
                    let Some(delay) = restart::stopped_retry_delay(self.stopped_retry_secs, stops)
                    else {
                        tracing::error!(slot = %name, "[{name}] slot stopped: {error}");
                        return Err(format!("slot {name}: {error}"));
                    };
                    let next = format!("{:.0}s", delay.as_secs_f32());
                    if stops == 0 {
                        tracing::error!(slot = %name, retry_in = %next, "[{name}] slot stopped: {error}; trying it again in {next} (stopped_slot_retry_secs)");
                    } else {
                        tracing::error!(slot = %name, retry_in = %next, tries = stops, "[{name}] slot still stopped after {stops} tries: {error}; trying again in {next}");
                    }
                    stops = stops.saturating_add(1);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = self.shutdown.changed() => {}
                        _ = self.wake.notified() => {
                            tracing::info!(slot = %name, "[{name}] restart requested: trying the stopped slot now");
                        }
                    }
                }
            }
        }
    }
}

/// Resolves when shutdown is requested while the session is not yet streaming
/// (a streaming session handles shutdown itself, to flush first).
async fn wait_for_shutdown_before_streaming(
    shutdown: &mut watch::Receiver<bool>,
    status: &SlotStatus,
) {
    loop {
        if *shutdown.borrow_and_update() && status.state() != SlotState::Streaming {
            return;
        }
        if shutdown.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn reconnect_delay(attempt: u32) -> Duration {
    let exp = RECONNECT_BASE
        .saturating_mul(1u32 << attempt.min(10))
        .min(RECONNECT_MAX);
    exp / 2 + exp.mul_f64(rand::rng().random_range(0.0..0.5))
}
