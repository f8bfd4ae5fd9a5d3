//! The authentication policy under tokio-postgres: a stream wrapper that reads the
//! server's messages before tokio-postgres does, until the login is over.
//!
//! tokio-postgres answers a cleartext or md5 request with the password as soon as it
//! reads one, and knows nothing of `require_auth`. [`Guarded`] sits on the decrypted
//! side of our own [`Transport`] (TLS is negotiated by `transport`, the same code as
//! the replication connection), holds back every authentication message until
//! `auth::AuthCheck` approved it, and fails the read with the reason otherwise, so
//! the refused request never reaches tokio-postgres and no password goes out. After
//! AuthenticationOk it passes bytes straight through. It also hands tokio-postgres the
//! certificate hash for SCRAM-SHA-256-PLUS. It never writes anything of its own.

use std::future::{ready, Ready};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding as PgChannelBinding, TlsConnect, TlsStream};

use super::auth::AuthCheck;
use super::frame::{take_cstr, take_frame, Frame};
use super::transport::Transport;
use crate::config::AuthMethod;

/// Bytes read from the socket at a time while guarding (login messages are small).
const CHUNK: usize = 8 * 1024;

/// The reason a guarded login was refused, for the caller's error message.
pub(crate) type Refusal = Arc<Mutex<Option<String>>>;

/// A [`Transport`] whose login messages are checked before they are read.
pub(crate) struct Guarded {
    inner: Transport,
    check: Option<AuthCheck>,
    /// Read from the socket, not yet a complete message.
    pending: BytesMut,
    /// Checked, to be handed to the reader.
    ready: BytesMut,
    refusal: Refusal,
}

impl Guarded {
    pub fn new(inner: Transport, check: AuthCheck) -> (Guarded, Refusal) {
        let refusal = Refusal::default();
        let guarded = Guarded {
            inner,
            check: Some(check),
            pending: BytesMut::new(),
            ready: BytesMut::new(),
            refusal: refusal.clone(),
        };
        (guarded, refusal)
    }

    pub fn is_tls(&self) -> bool {
        self.inner.is_tls()
    }

    /// Check one complete message; `Err` refuses the login.
    fn inspect(&mut self, frame: &Frame) -> Result<(), String> {
        let Some(check) = self.check.as_mut() else {
            return Ok(());
        };
        if frame.tag != b'R' || frame.body.len() < 4 {
            return Ok(());
        }
        let mut body = frame.body.clone();
        match body.get_i32() {
            0 => {
                check.authentication_ok()?;
                // The login is over: from here on, pass everything through.
                self.check = None;
                Ok(())
            }
            3 => check.password_request(AuthMethod::Password),
            5 => check.password_request(AuthMethod::Md5),
            10 => {
                let mut offered = Vec::new();
                while let Some(m) = take_cstr(&mut body).filter(|m| !m.is_empty()) {
                    offered.push(m);
                }
                // tokio-postgres makes the same choice from `channel_binding`.
                check
                    .sasl_request(&offered, self.inner.channel_binding())
                    .map(|_| ())
            }
            11 => check.sasl_continue(),
            // tokio-postgres checks the signature itself (and insists on this message).
            12 => check.sasl_final(),
            _ => Ok(()),
        }
    }

    /// Move checked messages from `pending` to `ready`.
    fn drain_pending(&mut self) -> io::Result<()> {
        while self.check.is_some() {
            let frame = match take_frame(&mut self.pending) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(detail) => return Err(io::Error::new(io::ErrorKind::InvalidData, detail)),
            };
            if let Err(reason) = self.inspect(&frame) {
                if let Ok(mut r) = self.refusal.lock() {
                    *r = Some(reason.clone());
                }
                return Err(io::Error::new(io::ErrorKind::PermissionDenied, reason));
            }
            self.ready.put_u8(frame.tag);
            self.ready.put_u32(frame.body.len() as u32 + 4);
            self.ready.extend_from_slice(&frame.body);
        }
        // Passing through now: whatever followed AuthenticationOk is unchecked data.
        let rest = self.pending.split();
        self.ready.extend_from_slice(&rest);
        Ok(())
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.check.is_none() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = [0u8; CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // End of stream: let the reader see it (with nothing held back that
                // was not a complete, checked message).
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    this.pending.extend_from_slice(read.filled());
                    if let Err(e) = this.drain_pending() {
                        return Poll::Ready(Err(e));
                    }
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl TlsStream for Guarded {
    fn channel_binding(&self) -> PgChannelBinding {
        match self.inner.channel_binding() {
            Some(hash) => PgChannelBinding::tls_server_end_point(hash),
            None => PgChannelBinding::none(),
        }
    }
}

/// The "TLS connector" for a stream that `transport` already switched to TLS: it
/// only lets tokio-postgres treat it as TLS (for channel binding).
pub(crate) struct AlreadyTls;

impl TlsConnect<Guarded> for AlreadyTls {
    type Stream = Guarded;
    type Error = io::Error;
    type Future = Ready<io::Result<Guarded>>;

    fn connect(self, stream: Guarded) -> Self::Future {
        ready(Ok(stream))
    }
}
