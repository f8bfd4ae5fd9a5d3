//! One frontend/backend protocol connection: transport, reading messages (framed by
//! `frame`), startup, authentication (checked step by step against `auth`'s policy;
//! SCRAM by `scram`).
//!
//! Owns the socket and the two buffers. Reading is cancel-safe: bytes only ever move
//! from the socket into `read_buf`, and a message is taken out of the buffer in one
//! synchronous step. Writing is cancel-safe too: pending output sits in `write_buf` and
//! is advanced only by what the socket accepted, so a cancelled send resumes with the
//! next one instead of tearing a message. It never interprets replication payloads and
//! never logs secrets.

use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::auth::{AuthCheck, SCRAM_SHA_256_PLUS};
use super::frame::{parse_error_fields, take_cstr, take_frame, Frame};
use super::scram::ScramClient;
use super::transport::{open_transport, Transport};
use super::{ConnectParams, SourceError};
use crate::config::AuthMethod;

/// Fresh read space reserved at a time. Big enough that a busy stream is read in a
/// few large syscalls; payloads are `Bytes` views into these chunks.
const READ_CHUNK: usize = 256 * 1024;
/// Below this much free space, reserve another chunk before reading.
const MIN_READ_SPACE: usize = 16 * 1024;

/// How long TCP connect plus startup may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// A started, authenticated connection (after the first ReadyForQuery).
pub(crate) struct Connection {
    transport: Transport,
    read_buf: BytesMut,
    write_buf: BytesMut,
    /// `postgres://user@host:port/db`, for messages.
    pub at: String,
    pub backend_pid: Option<i32>,
    /// Authenticated with SCRAM-SHA-256-PLUS (channel binding to the TLS certificate).
    pub channel_bound: bool,
}

impl Connection {
    /// Connect, send the startup packet with `extra` parameters, authenticate and
    /// wait for ReadyForQuery.
    pub async fn connect(p: &ConnectParams, extra: &[(&str, &str)]) -> Result<Self, SourceError> {
        let at = p.endpoint();
        match tokio::time::timeout(CONNECT_TIMEOUT, Self::connect_inner(p, extra, at.clone())).await
        {
            Ok(result) => result,
            Err(_) => Err(SourceError::Connect {
                at,
                source: io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {CONNECT_TIMEOUT:?}"),
                ),
            }),
        }
    }

    async fn connect_inner(
        p: &ConnectParams,
        extra: &[(&str, &str)],
        at: String,
    ) -> Result<Self, SourceError> {
        let transport = open_transport(p).await?;
        let mut conn = Connection {
            transport,
            read_buf: BytesMut::with_capacity(READ_CHUNK),
            write_buf: BytesMut::with_capacity(1024),
            at,
            backend_pid: None,
            channel_bound: false,
        };
        let mut params = vec![
            ("user", p.user.as_str()),
            ("database", p.dbname.as_str()),
            ("application_name", p.application_name.as_str()),
            ("client_encoding", "UTF8"),
        ];
        params.extend_from_slice(extra);
        frontend::startup_message(params, &mut conn.write_buf).map_err(|e| conn.invalid(e))?;
        conn.flush().await?;
        conn.authenticate(p).await?;
        conn.wait_ready().await?;
        Ok(conn)
    }

    async fn authenticate(&mut self, p: &ConnectParams) -> Result<(), SourceError> {
        let mut check = AuthCheck::new(p.require_auth, p.channel_binding);
        let mut scram: Option<ScramClient> = None;
        loop {
            let mut frame = self.read_frame(|| "during authentication".into()).await?;
            match frame.tag {
                b'R' => {}
                b'E' => return Err(self.server_error("authentication", frame.body)),
                b'N' => {
                    log_notice(&self.at, frame.body);
                    continue;
                }
                other => {
                    return Err(self.protocol(format!(
                        "unexpected message {:?} during authentication",
                        other as char
                    )))
                }
            }
            if frame.body.len() < 4 {
                return Err(self.protocol("short authentication message".into()));
            }
            let code = frame.body.get_i32();
            match code {
                0 => {
                    // A SCRAM login is complete only once the server proved that it
                    // knows the password; "OK" from anyone else proves nothing.
                    check.authentication_ok().map_err(|r| self.auth(p, r))?;
                    if scram.as_ref().is_some_and(|s| !s.is_verified()) {
                        return Err(
                            self.auth(p, "the server's SCRAM signature was never verified".into())
                        );
                    }
                    return Ok(());
                }
                3 => {
                    check
                        .password_request(AuthMethod::Password)
                        .map_err(|r| self.auth(p, r))?;
                    let pw = self.password(p, "cleartext password")?;
                    frontend::password_message(pw.as_bytes(), &mut self.write_buf)
                        .map_err(|e| self.invalid(e))?;
                }
                5 => {
                    check
                        .password_request(AuthMethod::Md5)
                        .map_err(|r| self.auth(p, r))?;
                    let pw = self.password(p, "md5")?;
                    if frame.body.len() < 4 {
                        return Err(self.protocol("md5 request without salt".into()));
                    }
                    let salt = [frame.body[0], frame.body[1], frame.body[2], frame.body[3]];
                    let hash = md5_hash(p.user.as_bytes(), pw.as_bytes(), salt);
                    frontend::password_message(hash.as_bytes(), &mut self.write_buf)
                        .map_err(|e| self.invalid(e))?;
                }
                10 => {
                    let mut offered = Vec::new();
                    while let Some(m) = take_cstr(&mut frame.body).filter(|m| !m.is_empty()) {
                        offered.push(m);
                    }
                    let (mechanism, binding) = check
                        .sasl_request(&offered, self.transport.channel_binding())
                        .map_err(|r| self.auth(p, self.sasl_hint(r)))?;
                    let pw = self.password(p, "SCRAM-SHA-256")?;
                    // PostgreSQL takes the user from the startup packet, not from SCRAM.
                    let s = ScramClient::new("", pw, binding);
                    frontend::sasl_initial_response(
                        mechanism,
                        s.client_first().as_bytes(),
                        &mut self.write_buf,
                    )
                    .map_err(|e| self.invalid(e))?;
                    self.channel_bound = mechanism == SCRAM_SHA_256_PLUS;
                    scram = Some(s);
                }
                11 => {
                    check.sasl_continue().map_err(|r| self.protocol(r))?;
                    let Some(s) = scram.as_mut() else {
                        return Err(self.protocol("SASL continue before SASL start".into()));
                    };
                    let answer = s
                        .client_final(&frame.body)
                        .map_err(|e| self.auth(p, format!("SCRAM exchange failed: {e}")))?;
                    frontend::sasl_response(answer.as_bytes(), &mut self.write_buf)
                        .map_err(|e| self.invalid(e))?;
                }
                12 => {
                    check.sasl_final().map_err(|r| self.protocol(r))?;
                    let Some(s) = scram.as_mut() else {
                        return Err(self.protocol("SASL final before SASL start".into()));
                    };
                    s.verify_server_final(&frame.body)
                        .map_err(|e| self.auth(p, e.to_string()))?;
                    continue;
                }
                other => {
                    let method = match other {
                        2 => "Kerberos V5",
                        6 => "SCM credentials",
                        7 | 8 => "GSSAPI",
                        9 => "SSPI",
                        _ => "an unknown method",
                    };
                    return Err(self.auth(p, format!("the server asks for {method} (code {other}); only SCRAM-SHA-256, md5, password and trust are supported: change pg_hba.conf")));
                }
            }
            self.flush().await?;
        }
    }

    /// After AuthenticationOk: collect BackendKeyData, skip ParameterStatus, stop at
    /// ReadyForQuery.
    async fn wait_ready(&mut self) -> Result<(), SourceError> {
        loop {
            let mut frame = self.read_frame(|| "during startup".into()).await?;
            match frame.tag {
                b'Z' => return Ok(()),
                b'K' if frame.body.len() >= 8 => self.backend_pid = Some(frame.body.get_i32()),
                b'S' => {}
                b'N' => log_notice(&self.at, frame.body),
                b'E' => return Err(self.server_error("startup", frame.body)),
                other => {
                    return Err(self.protocol(format!(
                        "unexpected message {:?} during startup",
                        other as char
                    )))
                }
            }
        }
    }

    /// A SASL refusal, with a hint when TLS would have made `-PLUS` possible.
    fn sasl_hint(&self, reason: String) -> String {
        if self.transport.is_tls() || !reason.contains("none usable") {
            reason
        } else {
            format!("{reason} (SCRAM-SHA-256-PLUS needs TLS: set sslmode)")
        }
    }

    fn password<'a>(&self, p: &'a ConnectParams, method: &str) -> Result<&'a str, SourceError> {
        p.password.as_ref().map(|s| s.expose()).ok_or_else(|| {
            self.auth(p, format!("the server requires a password ({method}) but none is configured: set the slot's password"))
        })
    }

    /// The next complete message. Cancel-safe (see the module comment).
    pub async fn read_frame(&mut self, during: impl Fn() -> String) -> Result<Frame, SourceError> {
        loop {
            if let Some(frame) = take_frame(&mut self.read_buf).map_err(|d| self.protocol(d))? {
                return Ok(frame);
            }
            if self.read_buf.capacity() - self.read_buf.len() < MIN_READ_SPACE {
                self.read_buf.reserve(READ_CHUNK);
            }
            match self.transport.read_buf(&mut self.read_buf).await {
                Ok(0) => {
                    return Err(SourceError::Closed {
                        at: self.at.clone(),
                        during: during(),
                    });
                }
                Ok(_) => {}
                Err(source) => {
                    return Err(SourceError::Io {
                        at: self.at.clone(),
                        source,
                    })
                }
            }
        }
    }

    /// The next complete message if it is already buffered: no read.
    pub fn buffered_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        take_frame(&mut self.read_buf).map_err(|d| self.protocol(d))
    }

    /// Queue bytes for sending; [`Connection::flush`] sends them.
    pub fn write_buf(&mut self) -> &mut BytesMut {
        &mut self.write_buf
    }

    /// Send everything queued. Cancel-safe: unsent bytes stay queued.
    pub async fn flush(&mut self) -> Result<(), SourceError> {
        let io_err = |at: &str, source| SourceError::Io {
            at: at.to_string(),
            source,
        };
        while !self.write_buf.is_empty() {
            match self.transport.write(&self.write_buf).await {
                Ok(0) => return Err(io_err(&self.at, io::ErrorKind::WriteZero.into())),
                Ok(n) => self.write_buf.advance(n),
                Err(e) => return Err(io_err(&self.at, e)),
            }
        }
        self.transport
            .flush()
            .await
            .map_err(|e| io_err(&self.at, e))
    }

    pub fn server_error(&self, context: &str, body: BytesMut) -> SourceError {
        SourceError::Server {
            at: self.at.clone(),
            context: context.to_string(),
            error: Box::new(parse_error_fields(body)),
        }
    }

    pub fn protocol(&self, detail: String) -> SourceError {
        SourceError::Protocol {
            at: self.at.clone(),
            detail,
        }
    }

    fn auth(&self, p: &ConnectParams, reason: String) -> SourceError {
        SourceError::Auth {
            at: self.at.clone(),
            user: p.user.clone(),
            reason,
        }
    }

    fn invalid(&self, e: io::Error) -> SourceError {
        SourceError::InvalidInput(format!(
            "{}: cannot encode a message: {e} (no NUL bytes allowed)",
            self.at
        ))
    }
}

pub(crate) fn log_notice(at: &str, body: BytesMut) {
    let n = parse_error_fields(body);
    tracing::info!(server = at, severity = %n.severity, code = %n.code, "postgres notice: {}", n.message);
}
