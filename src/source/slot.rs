//! Slot SQL over an ordinary (non-replication) tokio-postgres connection.
//!
//! Owns the queries about replication slots and server settings. It never drops a slot
//! and never advances one: progress is only confirmed through the replication stream.

use tokio_postgres::config::{
    ChannelBinding as PgChannelBinding, SslMode as PgSslMode, SslNegotiation,
};
use tokio_postgres::Client;

use super::auth::AuthCheck;
use super::guard::{AlreadyTls, Guarded};
use super::replication_wire::validate_slot_name;
use super::scram::ScramError;
use super::transport::open_transport;
use super::{ConnectParams, SourceError};
use crate::config::ChannelBinding;
use crate::lsn::Lsn;

/// The output plugin every slot this service creates uses.
pub const OUTPUT_PLUGIN: &str = "wal2json";

/// What `pg_replication_slots` says about one slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// `None` for physical slots.
    pub plugin: Option<String>,
    pub active: bool,
    /// The walsender currently using the slot.
    pub active_pid: Option<i32>,
    /// Where a consumer resumes; everything before it is acknowledged.
    pub confirmed_flush_lsn: Option<Lsn>,
    /// The oldest WAL the slot holds back.
    pub restart_lsn: Option<Lsn>,
    /// `reserved`, `extended`, `unreserved` or `lost` (lost = the slot is unusable).
    pub wal_status: Option<String>,
    /// The database a logical slot decodes; `None` for physical slots. A logical slot
    /// can only be streamed from a connection to this database.
    pub database: Option<String>,
}

/// How long the TCP connect, TLS and the login may take together.
const SQL_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Open a SQL connection; its driver task is spawned on the current runtime and ends
/// when the returned client is dropped.
///
/// The socket and TLS come from `transport`, exactly as for the replication
/// connection (same `sslmode` rules and errors, same `hostaddr`); the login runs
/// through `guard`, so `require_auth` and `channel_binding` hold here too.
pub async fn sql_connect(p: &ConnectParams) -> Result<Client, SourceError> {
    let at = p.endpoint();
    match tokio::time::timeout(SQL_CONNECT_TIMEOUT, sql_connect_inner(p, &at)).await {
        Ok(result) => result,
        Err(_) => Err(SourceError::Connect {
            at,
            source: std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {SQL_CONNECT_TIMEOUT:?}"),
            ),
        }),
    }
}

async fn sql_connect_inner(p: &ConnectParams, at: &str) -> Result<Client, SourceError> {
    let transport = open_transport(p).await?;
    let check = AuthCheck::new(p.require_auth, p.channel_binding);
    let (stream, refusal) = Guarded::new(transport, check);
    let mut config = tokio_postgres::Config::new();
    config
        .host(&p.host)
        .port(p.port)
        .user(&p.user)
        .dbname(&p.dbname)
        .application_name(&p.application_name)
        .channel_binding(match p.channel_binding {
            ChannelBinding::Disable => PgChannelBinding::Disable,
            ChannelBinding::Prefer => PgChannelBinding::Prefer,
            ChannelBinding::Require => PgChannelBinding::Require,
        });
    if let Some(pw) = &p.password {
        config.password(pw.expose());
    }
    // The stream is already TLS (or plaintext by `sslmode`): "direct" negotiation makes
    // tokio-postgres skip its own SSLRequest and take the stream as it is.
    if stream.is_tls() {
        config
            .ssl_mode(PgSslMode::Require)
            .ssl_negotiation(SslNegotiation::Direct);
    } else {
        config.ssl_mode(PgSslMode::Disable);
    }
    let (client, connection) = config.connect_raw(stream, AlreadyTls).await.map_err(|e| {
        match refusal.lock().ok().and_then(|mut r| r.take()) {
            Some(reason) => SourceError::Auth {
                at: at.to_string(),
                user: p.user.clone(),
                reason,
            },
            // tokio-postgres checks the server's signature itself; say what it means.
            None if crate::telemetry::error_chain(&e).contains("SCRAM verification error") => {
                SourceError::Auth {
                    at: at.to_string(),
                    user: p.user.clone(),
                    reason: ScramError::BadSignature.to_string(),
                }
            }
            None => sql_error(at, "connecting for slot SQL", e),
        }
    })?;
    drive(at.to_string(), connection);
    Ok(client)
}

/// Run a connection's driver task until the client is dropped.
fn drive<C>(at: String, connection: C)
where
    C: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(server = %at, error = %e, "slot SQL connection ended with an error");
        }
    });
}

/// The slot's row in `pg_replication_slots`, or `None` if there is no such slot.
pub async fn slot_info(c: &Client, slot: &str) -> Result<Option<SlotInfo>, SourceError> {
    let rows = c
        .query(
            "SELECT plugin::text, active, active_pid, confirmed_flush_lsn::text, restart_lsn::text, wal_status, database::text \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot],
        )
        .await
        .map_err(|e| sql_error(&client_at(slot), "reading pg_replication_slots", e))?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let context = || client_at(slot);
    let get_lsn = |i: usize| -> Result<Option<Lsn>, SourceError> {
        let text: Option<String> = row
            .try_get(i)
            .map_err(|e| sql_error(&context(), "reading pg_replication_slots", e))?;
        text.map(|t| t.parse::<Lsn>()).transpose().map_err(|e| {
            SourceError::InvalidInput(format!("{}: pg_replication_slots returned {e}", context()))
        })
    };
    let col = |e| sql_error(&context(), "reading pg_replication_slots", e);
    Ok(Some(SlotInfo {
        plugin: row.try_get(0).map_err(col)?,
        active: row.try_get(1).map_err(col)?,
        active_pid: row.try_get(2).map_err(col)?,
        confirmed_flush_lsn: get_lsn(3)?,
        restart_lsn: get_lsn(4)?,
        wal_status: row.try_get(5).map_err(col)?,
        database: row.try_get(6).map_err(col)?,
    }))
}

/// Create a logical slot with wal2json and return its consistent point (where
/// streaming will start). This waits for transactions running right now to finish.
pub async fn create_slot(c: &Client, slot: &str) -> Result<Lsn, SourceError> {
    validate_slot_name(slot)?;
    tracing::info!(
        slot,
        plugin = OUTPUT_PLUGIN,
        "creating logical replication slot (waits for running transactions to end)"
    );
    let row = c
        .query_one(
            "SELECT lsn::text FROM pg_create_logical_replication_slot($1, $2)",
            &[&slot, &OUTPUT_PLUGIN],
        )
        .await
        .map_err(|e| sql_error(&client_at(slot), "creating the replication slot", e))?;
    let lsn = parse_lsn_column(&row, slot, "pg_create_logical_replication_slot")?;
    tracing::info!(slot, plugin = OUTPUT_PLUGIN, %lsn, "created logical replication slot {slot:?} with {OUTPUT_PLUGIN} at {lsn}; changes are retained from here on");
    Ok(lsn)
}

/// The server's `wal_level` (`logical` is required for logical decoding).
pub async fn wal_level(c: &Client) -> Result<String, SourceError> {
    let row = c
        .query_one("SELECT current_setting('wal_level')", &[])
        .await
        .map_err(|e| sql_error("postgres", "reading wal_level", e))?;
    row.try_get(0)
        .map_err(|e| sql_error("postgres", "reading wal_level", e))
}

/// The server's current WAL insert position.
pub async fn current_wal_lsn(c: &Client) -> Result<Lsn, SourceError> {
    let row = c
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(|e| sql_error("postgres", "reading pg_current_wal_lsn()", e))?;
    parse_lsn_column(&row, "-", "pg_current_wal_lsn")
}

/// The tables of the connected database whose updates and deletes wal2json skips:
/// no replica identity (`NOTHING`), or the default identity without a primary key,
/// or `USING INDEX` on an index that is gone. Ordinary tables and partitions only
/// (wal2json reports a partitioned table's rows under the partitions' names);
/// `(schema, table)`, sorted.
pub async fn tables_without_identity(c: &Client) -> Result<Vec<(String, String)>, SourceError> {
    let rows = c
        .query(
            "SELECT n.nspname::text, c.relname::text FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' \
               AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
               AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%' \
               AND (c.relreplident = 'n' \
                 OR (c.relreplident = 'd' AND NOT EXISTS \
                      (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)) \
                 OR (c.relreplident = 'i' AND NOT EXISTS \
                      (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident))) \
             ORDER BY 1, 2",
            &[],
        )
        .await
        .map_err(|e| sql_error("postgres", "listing tables without a replica identity", e))?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|e| sql_error("postgres", "listing tables without a replica identity", e))
}

fn parse_lsn_column(row: &tokio_postgres::Row, slot: &str, what: &str) -> Result<Lsn, SourceError> {
    let text: String = row
        .try_get(0)
        .map_err(|e| sql_error(&client_at(slot), what, e))?;
    text.parse()
        .map_err(|e| SourceError::InvalidInput(format!("{}: {what} returned {e}", client_at(slot))))
}

/// A tokio-postgres `Client` does not expose its address, so SQL errors name the slot.
fn client_at(slot: &str) -> String {
    format!("postgres (slot {slot:?})")
}

/// Server-reported errors keep their SQLSTATE, message and hint in our own type, so
/// they read and classify exactly like replication-connection errors.
pub fn sql_error(at: &str, context: &str, e: tokio_postgres::Error) -> SourceError {
    match e.as_db_error() {
        Some(db) => SourceError::Server {
            at: at.to_string(),
            context: context.to_string(),
            error: Box::new(super::ServerError {
                severity: db
                    .parsed_severity()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| db.severity().to_string()),
                code: db.code().code().to_string(),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
            }),
        },
        None => SourceError::Sql {
            at: at.to_string(),
            context: context.to_string(),
            source: e,
        },
    }
}
