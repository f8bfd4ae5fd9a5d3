//! A fake PostgreSQL server that misbehaves during the SCRAM login.
//!
//! Real PostgreSQL cannot send a wrong server signature or skip the final SCRAM
//! message, so the client's checks for those need a peer that does. This one speaks
//! only the startup and SASL messages (refusing TLS), answers every connection the
//! same way, and never checks the client's proof: it plays a server that does not
//! know the password. It is not a PostgreSQL stand-in for anything else.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What the fake does after the client's SCRAM proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Send the final SCRAM message with a signature made without the password.
    BadSignature,
    /// Skip the final SCRAM message: say AuthenticationOk straight away.
    OkWithoutFinal,
}

/// A listening fake; stops when dropped.
pub struct FakePg {
    pub port: u16,
    task: JoinHandle<()>,
}

impl FakePg {
    pub async fn start(how: Misbehaviour) -> FakePg {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let _ = serve(socket, how).await;
                });
            }
        });
        FakePg { port, task }
    }
}

impl Drop for FakePg {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// SSLRequest's code (1234.5679).
const SSL_REQUEST: u32 = 80877103;

async fn serve(mut s: TcpStream, how: Misbehaviour) -> std::io::Result<()> {
    // Startup, after refusing TLS if asked.
    loop {
        let len = s.read_u32().await? as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body).await?;
        if body.len() >= 4
            && u32::from_be_bytes([body[0], body[1], body[2], body[3]]) == SSL_REQUEST
        {
            s.write_all(b"N").await?;
            continue;
        }
        break;
    }
    send(&mut s, b'R', &auth(10, b"SCRAM-SHA-256\0\0")).await?;

    // SASLInitialResponse: mechanism, length, client-first ("n,,n=,r=<nonce>").
    let (_, body) = recv(&mut s).await?;
    let text = String::from_utf8_lossy(&body);
    let nonce = text
        .split("r=")
        .nth(1)
        .unwrap_or_default()
        .trim_end_matches('\0')
        .to_string();
    let server_first = format!(
        "r={nonce}fakeservernonce,s={},i=4096",
        BASE64.encode(b"0123456789abcdef")
    );
    send(&mut s, b'R', &auth(11, server_first.as_bytes())).await?;

    // The client's proof: not checked (this server does not know the password).
    recv(&mut s).await?;
    if how == Misbehaviour::BadSignature {
        let server_final = format!("v={}", BASE64.encode([0u8; 32]));
        send(&mut s, b'R', &auth(12, server_final.as_bytes())).await?;
    }
    send(&mut s, b'R', &auth(0, b"")).await?;
    send(&mut s, b'K', &[0, 0, 0, 42, 0, 0, 0, 7]).await?;
    send(&mut s, b'Z', b"I").await?;
    // Hold the connection until the client goes away.
    let mut sink = [0u8; 1024];
    while s.read(&mut sink).await? > 0 {}
    Ok(())
}

fn auth(code: i32, data: &[u8]) -> Vec<u8> {
    let mut body = code.to_be_bytes().to_vec();
    body.extend_from_slice(data);
    body
}

async fn send(s: &mut TcpStream, tag: u8, body: &[u8]) -> std::io::Result<()> {
    let mut msg = vec![tag];
    msg.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    msg.extend_from_slice(body);
    s.write_all(&msg).await
}

async fn recv(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let tag = s.read_u8().await?;
    let len = s.read_u32().await? as usize;
    let mut body = vec![0u8; len.saturating_sub(4)];
    s.read_exact(&mut body).await?;
    Ok((tag, body))
}
