//! Signals to a running streamer, carried in the slot's own WAL as logical messages.
//!
//! Owns the signal documents (`backfill`, `restart`, and the backfill's watermarks)
//! and the one SQL call that writes them; their message prefix is
//! [`crate::decode::SIGNAL_PREFIX`], which the decoder's options keep. A signal is a
//! transactional `pg_logical_emit_message(true, PREFIX, json)`: it is durable, it
//! reaches every slot of the database in commit order, and it needs no port or
//! channel besides PostgreSQL. Each document names its slot; other slots of the
//! database ignore it.

use serde::{Deserialize, Serialize};

use crate::config::SlotConfig;
use crate::credentials::Credentials;
use crate::lsn::Lsn;
use crate::source;

/// The logical-message prefix of every signal (defined in `decode`, whose wal2json
/// options must keep it).
pub use crate::decode::SIGNAL_PREFIX as PREFIX;

/// One signal document (`{"action": ..., "slot": ..., ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Signal {
    /// Put the named tables' existing rows on the stream (`backfill` command, admin
    /// Lambda). `id` makes a signal read twice (a replay after a crash) run once.
    Backfill {
        slot: String,
        id: String,
        tables: Vec<String>,
        #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
    },
    /// Restart the slot's session (admin Lambda).
    Restart { slot: String, id: String },
    /// A backfill chunk's window: written by the streamer itself before (`low`) and
    /// after (`high`) it reads the chunk. `run` is the streaming session that wrote
    /// it; a replayed watermark of an earlier session is ignored.
    Watermark {
        slot: String,
        run: String,
        table: String,
        chunk: u64,
        mark: Mark,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Low,
    High,
}

impl Signal {
    /// The slot the signal is for.
    pub fn slot(&self) -> &str {
        match self {
            Signal::Backfill { slot, .. }
            | Signal::Restart { slot, .. }
            | Signal::Watermark { slot, .. } => slot,
        }
    }

    /// The document as written into the WAL.
    pub fn to_json(&self) -> String {
        // A plain struct of strings and numbers always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A message with our prefix that is not a signal this version understands.
#[derive(Debug, thiserror::Error)]
#[error("logical message with prefix {PREFIX:?} at LSN {lsn} is not a signal this version understands ({source}); ignored. Content: {excerpt:?}")]
pub struct BadSignal {
    pub lsn: Lsn,
    pub excerpt: String,
    #[source]
    pub source: serde_json::Error,
}

/// Read a message's content as a signal.
pub fn parse(content: &str, lsn: Lsn) -> Result<Signal, BadSignal> {
    serde_json::from_str(content).map_err(|source| BadSignal {
        lsn,
        excerpt: content.chars().take(200).collect(),
        source,
    })
}

/// A fresh id for a signal or a run: time and randomness, unique enough to tell
/// one request from another.
pub fn new_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{nanos:x}-{:08x}", rand::random::<u32>())
}

/// Write `signal` into the connected database as a transactional logical message;
/// the LSN PostgreSQL gave it. Needs a role that may call `pg_logical_emit_message`
/// (a superuser, or one granted EXECUTE on it).
pub async fn emit(
    client: &tokio_postgres::Client,
    signal: &Signal,
) -> Result<Lsn, tokio_postgres::Error> {
    let row = client
        .query_one(
            "SELECT pg_logical_emit_message(true, $1::text, $2::text)::text",
            &[&PREFIX, &signal.to_json()],
        )
        .await?;
    let text: String = row.get(0);
    Ok(text.parse().unwrap_or_default())
}

/// Sending a signal failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("slot {slot}: cannot connect to its database to signal the streamer: {reason}")]
    Connect { slot: String, reason: String },
    #[error("slot {slot}: writing the signal failed: {reason}; the user needs EXECUTE on pg_logical_emit_message (a superuser, or GRANT EXECUTE ON FUNCTION pg_logical_emit_message(boolean, text, text) TO <user>)")]
    Emit { slot: String, reason: String },
}

/// A signal written into the slot's database, for the operator's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sent {
    pub slot: String,
    /// The server it was written to (`host:port`, no secrets).
    pub server: String,
    pub lsn: String,
    pub signal: Signal,
}

/// Connect to `slot`'s database as the streamer does and write `signal` there. The
/// streamer acts on it when its reader reaches it in the slot's stream.
pub async fn send(
    slot: &SlotConfig,
    aws: &aws_config::SdkConfig,
    signal: Signal,
) -> Result<Sent, SendError> {
    let connect_err = |reason: String| SendError::Connect {
        slot: slot.name.clone(),
        reason,
    };
    let params = Credentials::new(slot, aws)
        .connect_params()
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let client = source::sql_connect(&params)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    let lsn = emit(&client, &signal).await.map_err(|e| SendError::Emit {
        slot: slot.name.clone(),
        reason: source::sql_error(&params.endpoint(), "pg_logical_emit_message", e).to_string(),
    })?;
    Ok(Sent {
        slot: slot.name.clone(),
        server: params.endpoint(),
        lsn: lsn.to_string(),
        signal,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_round_trip_as_documented() {
        let s = Signal::Backfill {
            slot: "s".into(),
            id: "1".into(),
            tables: vec!["public.orders".into()],
            filter: Some("id > 5".into()),
        };
        let json = s.to_json();
        assert_eq!(
            json,
            r#"{"action":"backfill","slot":"s","id":"1","tables":["public.orders"],"where":"id > 5"}"#
        );
        assert_eq!(parse(&json, Lsn(1)).unwrap(), s);
        let w = Signal::Watermark {
            slot: "s".into(),
            run: "r".into(),
            table: "public.t".into(),
            chunk: 3,
            mark: Mark::High,
        };
        assert_eq!(parse(&w.to_json(), Lsn(1)).unwrap(), w);
        assert_eq!(w.slot(), "s");
        let r = parse(r#"{"action":"restart","slot":"x","id":"9"}"#, Lsn(1)).unwrap();
        assert_eq!(r.slot(), "x");
    }

    #[test]
    fn a_message_that_is_not_a_signal_is_an_error_naming_its_position() {
        let e = parse(r#"{"action":"explode"}"#, Lsn(0x10)).unwrap_err();
        assert!(e.to_string().contains("0/10"), "{e}");
        assert!(parse("not json", Lsn(1)).is_err());
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
    }
}
