//! The replication source: a PostgreSQL streaming-replication client and the slot SQL.
//!
//! Owns the wire protocol of a `replication=database` connection (startup,
//! authentication, `START_REPLICATION`, the CopyBoth stream of XLogData and keepalive
//! messages, standby status updates) and the handful of SQL queries about slots.
//! It hands out raw wal2json payloads as [`bytes::Bytes`]; it never decodes them, never
//! decides what is safe to acknowledge (the caller passes the flushed LSN in) and never
//! retries: every failure comes back as a [`SourceError`] that says whether a reconnect
//! can help ([`SourceError::is_transient`]).
//!
//! # Layout
//!
//! - `transport`: the socket (TCP / Unix socket), switched to TLS per `sslmode`.
//! - `tls`: rustls configuration per `sslmode`, channel binding, handshake errors.
//! - `frame`: backend message framing and error/notice fields.
//! - `conn`: one connection: reading messages, startup and authentication.
//! - `auth`: the authentication policy (`require_auth`, `channel_binding`, no success
//!   before the server's SCRAM signature), shared by both kinds of connection.
//! - `scram`: the SCRAM-SHA-256 client.
//! - `guard`: applies `auth` under tokio-postgres' SQL connections.
//! - `replication`: [`ReplicationStream`]: `START_REPLICATION` and the CopyBoth stream.
//! - `replication_wire`: that stream's messages: the command, XLogData, keepalives, status
//!   updates.
//! - `slot`: slot SQL over tokio-postgres ([`sql_connect`], [`slot_info`], ...).
//! - `identity`: replica identities and the start-up check that they carry the
//!   partition-key columns ([`check_identities`]).

mod auth;
mod conn;
mod frame;
mod guard;
mod identity;
mod replication;
mod replication_wire;
mod scram;
mod slot;
mod tls;
mod transport;

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::config::{ChannelBinding, RequireAuth, Secret, SlotConfig, SslMode};

pub use identity::{
    check_identities, keyless_tables, table_identities, IdentityLacksKey, TableIdentity,
};
pub use replication::{NoticeHook, ReplicationStream};
pub use replication_wire::ReplicationMessage;
pub use slot::{
    create_slot, current_wal_lsn, slot_info, sql_connect, sql_error, tables_without_identity,
    wal_level, SlotInfo, OUTPUT_PLUGIN,
};

/// Where and as whom to connect. Built from a [`SlotConfig`] or by hand (tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectParams {
    /// A host name or IP address, or a Unix-socket directory (starts with `/`).
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Option<Secret>,
    pub dbname: String,
    /// Shown in `pg_stat_activity` / `pg_stat_replication`.
    pub application_name: String,
    /// Resolved TLS mode (never "unset": see [`SslMode::resolve`]).
    pub sslmode: SslMode,
    /// CA bundle (PEM) to verify against; `None` = the system trust store.
    pub sslrootcert: Option<PathBuf>,
    /// Connect here instead of resolving `host` (libpq's `hostaddr`); `host` stays the
    /// name the certificate must carry.
    pub hostaddr: Option<IpAddr>,
    /// Whether the SCRAM login must, may or must not be bound to the certificate.
    pub channel_binding: ChannelBinding,
    /// The authentication methods the server may ask for.
    pub require_auth: RequireAuth,
}

/// The application name the service reports unless told otherwise.
pub const DEFAULT_APPLICATION_NAME: &str = "pg-cdc-to-kinesis";

impl ConnectParams {
    pub fn from_slot(slot: &SlotConfig) -> Self {
        ConnectParams {
            host: slot.host.clone(),
            port: slot.port,
            user: slot.user.clone(),
            password: slot.password.clone(),
            dbname: slot.db_name.clone(),
            application_name: format!("{DEFAULT_APPLICATION_NAME}/{}", slot.name),
            sslmode: SslMode::resolve(slot.sslmode, &slot.host),
            sslrootcert: slot.sslrootcert.clone(),
            hostaddr: slot.hostaddr,
            channel_binding: slot.channel_binding,
            require_auth: slot.require_auth,
        }
    }

    /// `postgres://user@host:port/db`: how errors and logs name the server. No secrets.
    pub fn endpoint(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}",
            self.user, self.host, self.port, self.dbname
        )
    }
}

/// The fields of a server `ErrorResponse` (or `NoticeResponse`) that matter to people.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerError {
    /// `ERROR`, `FATAL`, `PANIC` (never localized).
    pub severity: String,
    /// The SQLSTATE, e.g. `28P01`.
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.severity, self.code, self.message)?;
        if let Some(detail) = &self.detail {
            write!(f, " (detail: {detail})")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        if let Some(advice) = self.advice() {
            write!(f, "; {advice}")?;
        }
        Ok(())
    }
}

impl ServerError {
    /// Whether reconnecting later can succeed without anyone changing anything.
    ///
    /// Transient: connection exceptions (08), transaction rollbacks (40), insufficient
    /// resources such as too many connections (53), operator intervention such as
    /// `pg_terminate_backend` or a server shutting down / starting up (57), system
    /// errors (58) except a missing file (58P01) and "replication slot is active for
    /// PID n" (55006, the previous walsender has not exited yet). Everything else (bad
    /// password 28P01, missing database 3D000, missing slot 42704, bad wal2json option
    /// 22023, no privilege 42501, invalidated slot 55000, a missing wal2json library or
    /// removed WAL segment 58P01, ...) needs a human.
    pub fn is_transient(&self) -> bool {
        let class = self.code.get(..2).unwrap_or("");
        (matches!(class, "08" | "40" | "53" | "57" | "58") && self.code != UNDEFINED_FILE)
            || self.code == "55006"
    }

    /// What the operator must do, for the permanent errors whose server text does not
    /// say it.
    pub fn advice(&self) -> Option<&'static str> {
        if self.code != UNDEFINED_FILE {
            return None;
        }
        Some(if self.message.contains("WAL segment") {
            "the server removed WAL this slot still needs, so the changes in it are gone: drop and re-create the slot, then backfill the tables (raise max_slot_wal_keep_size or wal_keep_size so that it does not happen again)"
        } else if self.message.contains("could not access file") {
            "the wal2json library is not installed on this server: install wal2json for this PostgreSQL version (the postgresql-NN-wal2json package; built in on RDS and Aurora) on every server this slot may connect to, including failover replicas, then start again"
        } else {
            "a file the server needs is missing: fix the server, then start again"
        })
    }
}

/// SQLSTATE `undefined_file`: a missing plugin library or a removed WAL segment.
/// Retrying cannot bring either back.
const UNDEFINED_FILE: &str = "58P01";

/// Everything that can go wrong talking to PostgreSQL. Each message names the server
/// (`postgres://user@host:port/db`) and, where there is one, the slot.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{at}: cannot connect: {source}; check host and port and that PostgreSQL is running and reachable")]
    Connect {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: connection lost: {source}")]
    Io {
        at: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{at}: the server closed the connection {during}")]
    Closed { at: String, during: String },
    #[error("{at}: {context}: {error}")]
    Server {
        at: String,
        context: String,
        error: Box<ServerError>,
    },
    #[error("{at}: cannot authenticate as user {user:?}: {reason}")]
    Auth {
        at: String,
        user: String,
        reason: String,
    },
    #[error(
        "{at}: replication on slot {slot:?} ended by the server (CopyDone); reconnect to resume"
    )]
    StreamEnded { at: String, slot: String },
    #[error("{at}: protocol violation: {detail}; this is a bug or an unsupported server")]
    Protocol { at: String, detail: String },
    #[error("{0}")]
    InvalidInput(String),
    #[error("{at}: {reason}")]
    Tls { at: String, reason: String },
    #[error("{at}: the server does not accept TLS connections, but sslmode is {sslmode}; turn on `ssl` on the server, or lower `sslmode` to `prefer` only on a trusted network")]
    TlsUnavailable { at: String, sslmode: SslMode },
    #[error("{at}: {context}: {}", crate::telemetry::error_chain(source))]
    Sql {
        at: String,
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
}

impl SourceError {
    /// True when reconnecting (with backoff) may succeed; false when a human must fix
    /// something first (credentials, database, slot, options, privileges).
    pub fn is_transient(&self) -> bool {
        match self {
            SourceError::Connect { .. }
            | SourceError::Io { .. }
            | SourceError::Closed { .. }
            | SourceError::StreamEnded { .. } => true,
            SourceError::Server { error, .. } => error.is_transient(),
            SourceError::Auth { .. }
            | SourceError::Protocol { .. }
            | SourceError::InvalidInput(_)
            | SourceError::Tls { .. }
            | SourceError::TlsUnavailable { .. } => false,
            SourceError::Sql { source, .. } => match source.as_db_error() {
                Some(db) => sqlstate_is_transient(db.code().code()),
                // Certificate problems arrive as I/O errors but need a human.
                None if tls::find_rustls_error(source).is_some() => false,
                // Not a server error: I/O, closed connection, or a client-side
                // conversion problem. Only the first two are worth a retry.
                None => {
                    source.is_closed()
                        || std::error::Error::source(source)
                            .is_some_and(|s| s.is::<std::io::Error>())
                }
            },
        }
    }

    /// True when the server refused the credentials (wrong password, expired token,
    /// unknown user): the moment to fetch a rotated secret again.
    pub fn is_auth_failure(&self) -> bool {
        matches!(self, SourceError::Auth { .. })
            || matches!(self.sqlstate(), Some("28P01" | "28000"))
    }

    /// The SQLSTATE when the server reported the error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            SourceError::Server { error, .. } => Some(&error.code),
            SourceError::Sql { source, .. } => source.code().map(|c| c.code()),
            _ => None,
        }
    }
}

fn sqlstate_is_transient(code: &str) -> bool {
    ServerError {
        code: code.to_string(),
        ..ServerError::default()
    }
    .is_transient()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(code: &str) -> SourceError {
        SourceError::Server {
            at: "postgres://u@h:5432/d".into(),
            context: "test".into(),
            error: Box::new(ServerError {
                severity: "FATAL".into(),
                code: code.into(),
                message: "m".into(),
                detail: None,
                hint: None,
            }),
        }
    }

    #[test]
    fn classifies_server_errors_by_sqlstate() {
        for code in [
            "57P01", "57P03", "53300", "08006", "55006", "40001", "58030",
        ] {
            assert!(server(code).is_transient(), "{code} should be transient");
        }
        for code in [
            "28P01", "28000", "3D000", "42704", "22023", "42501", "55000", "42601", "XX000", "",
            "58P01",
        ] {
            assert!(!server(code).is_transient(), "{code} should be permanent");
        }
    }

    #[test]
    fn messages_name_the_server_and_show_hint() {
        let e = SourceError::Server {
            at: "postgres://u@h:5432/d".into(),
            context: "START_REPLICATION on slot \"s\"".into(),
            error: Box::new(ServerError {
                severity: "ERROR".into(),
                code: "42704".into(),
                message: "replication slot \"s\" does not exist".into(),
                detail: Some("d".into()),
                hint: Some("create it".into()),
            }),
        };
        let text = e.to_string();
        assert!(
            text.starts_with("postgres://u@h:5432/d: START_REPLICATION on slot \"s\": ERROR 42704"),
            "{text}"
        );
        assert!(text.contains("(hint: create it)"), "{text}");
    }

    #[test]
    fn a_missing_file_says_what_to_do() {
        let missing = |message: &str| ServerError {
            severity: "ERROR".into(),
            code: "58P01".into(),
            message: message.into(),
            ..ServerError::default()
        };
        let plugin = missing("could not access file \"wal2json\": No such file or directory");
        assert!(!plugin.is_transient());
        assert!(plugin.to_string().contains("install wal2json"), "{plugin}");
        let wal =
            missing("requested WAL segment 000000010000000000000003 has already been removed");
        assert!(!wal.is_transient());
        let text = wal.to_string();
        assert!(
            text.contains("re-create the slot") && text.contains("backfill"),
            "{text}"
        );
        let other = ServerError {
            code: "58030".into(),
            ..missing("could not read file")
        };
        assert!(other.is_transient() && other.advice().is_none());
    }

    #[test]
    fn endpoint_has_no_password() {
        let p = ConnectParams {
            host: "db".into(),
            port: 5433,
            user: "cdc".into(),
            password: Some(Secret::new("hunter2")),
            dbname: "app".into(),
            application_name: "x".into(),
            sslmode: SslMode::VerifyFull,
            sslrootcert: None,
            hostaddr: None,
            channel_binding: ChannelBinding::Prefer,
            require_auth: RequireAuth::default(),
        };
        assert_eq!(p.endpoint(), "postgres://cdc@db:5433/app");
        assert!(!format!("{p:?}").contains("hunter2"));
    }
}
