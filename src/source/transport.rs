//! The byte stream under the protocol: TCP, TLS over TCP, or a Unix socket.
//!
//! Owns opening the socket and negotiating TLS (SSLRequest, then the rustls handshake
//! from `tls`) according to the `sslmode`. The protocol code only sees
//! `AsyncRead + AsyncWrite`. It never falls back to plaintext when the mode requires
//! TLS, and never sends anything but the 8-byte SSLRequest before the handshake.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{tls, ConnectParams, SourceError};
use crate::config::SslMode;

/// SSLRequest: length 8, then the magic code 1234.5679 (protocol docs, "SSLRequest").
const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

/// The byte stream under the protocol.
pub(crate) enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

impl AsyncRead for Transport {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_flush(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Transport::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Transport::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            #[cfg(unix)]
            Transport::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

impl Transport {
    /// The tls-server-end-point hash for SCRAM-SHA-256-PLUS, when TLS is on and the
    /// certificate's signature algorithm has one.
    pub fn channel_binding(&self) -> Option<Vec<u8>> {
        match self {
            Transport::Tls(s) => {
                let cert = s.get_ref().1.peer_certificates()?.first()?;
                tls::channel_binding_hash(cert)
            }
            _ => None,
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// Open the socket and, as `p.sslmode` says, switch it to TLS.
pub(crate) async fn open_transport(p: &ConnectParams) -> Result<Transport, SourceError> {
    let at = p.endpoint();
    let connect_err = |source: io::Error| SourceError::Connect {
        at: at.clone(),
        source,
    };
    if p.host.starts_with('/') {
        // libpq never uses TLS on Unix sockets; refusing is clearer than pretending.
        if p.sslmode.requires_tls() {
            return Err(SourceError::Tls {
                at,
                reason: format!(
                    "sslmode {} needs TLS, which PostgreSQL does not offer on Unix sockets; \
                     connect over TCP or use sslmode prefer or disable",
                    p.sslmode
                ),
            });
        }
        #[cfg(unix)]
        {
            let path = format!("{}/.s.PGSQL.{}", p.host.trim_end_matches('/'), p.port);
            return Ok(Transport::Unix(
                tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(connect_err)?,
            ));
        }
        #[cfg(not(unix))]
        return Err(connect_err(io::Error::new(
            io::ErrorKind::Unsupported,
            "Unix sockets need a Unix system",
        )));
    }
    // `hostaddr` (a tunnel) replaces only the address; TLS still checks `host`.
    let tcp = match p.hostaddr {
        Some(addr) => TcpStream::connect((addr, p.port)).await,
        None => TcpStream::connect((p.host.as_str(), p.port)).await,
    };
    let mut tcp = tcp.map_err(connect_err)?;
    // Status updates are tiny and latency matters more than packet count.
    tcp.set_nodelay(true).map_err(connect_err)?;
    if p.sslmode == SslMode::Disable {
        return Ok(Transport::Tcp(tcp));
    }
    tcp.write_all(&SSL_REQUEST).await.map_err(connect_err)?;
    let answer = tcp.read_u8().await.map_err(connect_err)?;
    match answer {
        b'S' => {}
        b'N' if !p.sslmode.requires_tls() => {
            tracing::info!(server = %at, sslmode = %p.sslmode, tls = false, "the server does not offer TLS: connecting without encryption");
            return Ok(Transport::Tcp(tcp));
        }
        b'N' => {
            return Err(SourceError::TlsUnavailable {
                at,
                sslmode: p.sslmode,
            })
        }
        // An 'E' here is a pre-7.x server or something that is not PostgreSQL.
        other => {
            return Err(SourceError::Protocol {
                at,
                detail: format!("unexpected answer {:?} to SSLRequest", other as char),
            })
        }
    }
    let tls_err = |reason: String| SourceError::Tls {
        at: at.clone(),
        reason,
    };
    let config = tls::client_config(p.sslmode, p.sslrootcert.as_deref())
        .map_err(|e| tls_err(e.to_string()))?;
    let name = tls::server_name(&p.host).map_err(&tls_err)?;
    let stream = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| match tls::find_rustls_error(&e) {
            Some(r) => tls_err(tls::explain(
                r,
                &p.host,
                p.sslmode,
                p.sslrootcert.as_deref(),
            )),
            // Reset or closed mid-handshake: a network problem, worth a retry.
            None => connect_err(e),
        })?;
    if p.sslmode == SslMode::Prefer {
        tracing::info!(server = %at, sslmode = %p.sslmode, tls = true, "connected with TLS");
    }
    Ok(Transport::Tls(Box::new(stream)))
}
