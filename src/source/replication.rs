//! [`ReplicationStream`]: `START_REPLICATION ... LOGICAL` and the CopyBoth stream.
//!
//! Owns the stream's state and I/O: starting replication on a connection, receiving
//! messages (notices handed to the hook), sending status updates and ending COPY
//! cleanly. The messages' bytes are `replication_wire`'s. It never decides which LSN
//! is safe to confirm; the caller does.

use std::sync::Arc;

use postgres_protocol::message::frontend;

use super::conn::{log_notice, Connection};
use super::frame::{parse_error_fields, Frame};
use super::replication_wire::{
    parse_copy_data, pg_now_micros, put_status_update, start_replication_command,
    ReplicationMessage,
};
use super::{ConnectParams, ServerError, SourceError};
use crate::lsn::Lsn;

/// Called with each notice the walsender sends while streaming (wal2json warns this
/// way, once per change it skips); true when it took care of the notice, which is
/// then not logged.
pub type NoticeHook = Arc<dyn Fn(&ServerError) -> bool + Send + Sync>;

/// A `replication=database` connection, before and after `START_REPLICATION`.
pub struct ReplicationStream {
    conn: Connection,
    /// Set by [`ReplicationStream::start`]; names the slot in errors.
    slot: Option<String>,
    on_notice: Option<NoticeHook>,
}

impl std::fmt::Debug for ReplicationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicationStream")
            .field("server", &self.conn.at)
            .field("slot", &self.slot)
            .field("backend_pid", &self.conn.backend_pid)
            .finish()
    }
}

impl ReplicationStream {
    /// Connect with `replication=database` and authenticate.
    pub async fn connect(p: &ConnectParams) -> Result<Self, SourceError> {
        let conn = Connection::connect(p, &[("replication", "database")]).await?;
        tracing::debug!(server = %conn.at, backend_pid = conn.backend_pid, "replication connection ready");
        Ok(ReplicationStream {
            conn,
            slot: None,
            on_notice: None,
        })
    }

    /// Hand streaming notices to `hook` first (see [`NoticeHook`]).
    pub fn on_notice(&mut self, hook: NoticeHook) {
        self.on_notice = Some(hook);
    }

    /// The walsender's process id (for `pg_terminate_backend` and logs).
    pub fn backend_pid(&self) -> Option<i32> {
        self.conn.backend_pid
    }

    /// Whether authentication used SCRAM-SHA-256-PLUS (bound to the TLS certificate).
    pub fn channel_bound(&self) -> bool {
        self.conn.channel_bound
    }

    /// Send `START_REPLICATION SLOT "slot" LOGICAL start ("k" 'v', ...)` and wait for
    /// CopyBothResponse. `start` = 0/0 means "from the slot's confirmed_flush_lsn".
    pub async fn start(
        &mut self,
        slot: &str,
        start: Lsn,
        options: &[(String, String)],
    ) -> Result<(), SourceError> {
        let command = start_replication_command(slot, start, options)?;
        tracing::info!(server = %self.conn.at, slot, %start, "starting replication");
        frontend::query(&command, self.conn.write_buf()).map_err(|e| {
            SourceError::InvalidInput(format!(
                "slot {slot:?}: cannot encode START_REPLICATION: {e}"
            ))
        })?;
        self.conn.flush().await?;
        let context = format!("START_REPLICATION on slot {slot:?}");
        loop {
            let frame = self.conn.read_frame(|| format!("during {context}")).await?;
            match frame.tag {
                b'W' => {
                    self.slot = Some(slot.to_string());
                    return Ok(());
                }
                b'E' => return Err(self.conn.server_error(&context, frame.body)),
                b'N' => log_notice(&self.conn.at, frame.body),
                b'S' => {}
                other => {
                    return Err(self.conn.protocol(format!(
                        "unexpected message {:?} in answer to {context}",
                        other as char
                    )))
                }
            }
        }
    }

    /// The next XLogData or keepalive. Call after [`ReplicationStream::start`].
    ///
    /// Cancel-safe: it may be dropped in `tokio::select!` at any await point without
    /// losing or tearing a message.
    pub async fn recv(&mut self) -> Result<ReplicationMessage, SourceError> {
        loop {
            let slot = self.slot.as_deref().unwrap_or("(not started)");
            let frame = self
                .conn
                .read_frame(|| format!("while streaming slot {slot:?}"))
                .await?;
            if let Some(message) = self.message(frame)? {
                return Ok(message);
            }
        }
    }

    /// The next message if it is already buffered, without reading (`None` when a
    /// read is needed): lets the caller take a burst of messages in one go.
    pub fn try_recv(&mut self) -> Result<Option<ReplicationMessage>, SourceError> {
        while let Some(frame) = self.conn.buffered_frame()? {
            if let Some(message) = self.message(frame)? {
                return Ok(Some(message));
            }
        }
        Ok(None)
    }

    /// What one frame of the COPY stream says: a message, nothing for the caller (a
    /// notice, a parameter status), or the stream's end or error.
    fn message(&mut self, frame: Frame) -> Result<Option<ReplicationMessage>, SourceError> {
        let slot = self.slot.as_deref().unwrap_or("(not started)");
        match frame.tag {
            b'd' => parse_copy_data(frame.body)
                .map(Some)
                .map_err(|d| self.conn.protocol(format!("slot {slot:?}: {d}"))),
            b'E' => Err(self
                .conn
                .server_error(&format!("streaming slot {slot:?}"), frame.body)),
            b'N' => {
                let notice = parse_error_fields(frame.body);
                if !self.on_notice.as_ref().is_some_and(|hook| hook(&notice)) {
                    tracing::info!(server = %self.conn.at, severity = %notice.severity, code = %notice.code, "postgres notice: {}", notice.message);
                }
                Ok(None)
            }
            b'S' => Ok(None),
            // The walsender ends COPY (timeline switch, shutdown); CommandComplete
            // and ReadyForQuery may follow. Either way this stream is over.
            b'c' | b'C' | b'Z' => Err(SourceError::StreamEnded {
                at: self.conn.at.clone(),
                slot: slot.to_string(),
            }),
            other => Err(self.conn.protocol(format!(
                "unexpected message {:?} while streaming slot {slot:?}",
                other as char
            ))),
        }
    }

    /// Standby status update: write = flush = apply = `flushed`. Sending an LSN tells
    /// the server it may discard WAL up to there and, on reconnect, resume after it.
    ///
    /// Cancel-safe in the sense that a cancelled update is sent in full with the
    /// next one; prefer awaiting it to completion.
    pub async fn send_status(
        &mut self,
        flushed: Lsn,
        reply_requested: bool,
    ) -> Result<(), SourceError> {
        put_status_update(
            self.conn.write_buf(),
            flushed,
            pg_now_micros(),
            reply_requested,
        );
        self.conn.flush().await
    }
}

impl ReplicationStream {
    /// End replication cleanly: a last status update, then CopyDone, then read (and
    /// discard) what the walsender still sends until it ends COPY too. The walsender
    /// reads our messages in order, so once it answers CopyDone it has applied the
    /// last update. Closing the socket right after the update instead lets a busy
    /// walsender drop the connection without ever reading it: the final
    /// confirmation would be lost and everything since the previous one resent.
    pub async fn finish(
        &mut self,
        flushed: Lsn,
        timeout: std::time::Duration,
    ) -> Result<(), SourceError> {
        put_status_update(self.conn.write_buf(), flushed, pg_now_micros(), false);
        frontend::copy_done(self.conn.write_buf());
        self.conn.flush().await?;
        let drain = async {
            loop {
                match self.recv().await {
                    Ok(_) => continue,
                    Err(SourceError::StreamEnded { .. }) => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        };
        match tokio::time::timeout(timeout, drain).await {
            Ok(result) => result,
            Err(_) => Err(SourceError::Closed {
                at: self.conn.at.clone(),
                during: format!("without ending COPY within {timeout:?} after CopyDone"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Compile-time check: the pipeline spawns these on a multi-threaded runtime.
    #[allow(dead_code)]
    fn futures_are_send(s: &mut ReplicationStream, p: &ConnectParams) {
        fn is_send<T: Send>(_: T) {}
        is_send(ReplicationStream::connect(p));
        is_send(s.recv());
    }
}
