//! A TCP proxy in front of a local server that can cut every connection through it on
//! demand: the network failure a test cannot get from a healthy PostgreSQL.
//!
//! Owns its listener and the connections through it, on plain threads so it works the
//! same under any test runtime. Must never touch a connection it did not accept; it
//! stops listening when dropped.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the accept loop checks whether it should stop.
const ACCEPT_POLL: Duration = Duration::from_millis(20);

/// A running proxy from `127.0.0.1:<port>` to `127.0.0.1:<upstream>`.
pub struct Proxy {
    pub port: u16,
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    /// Both sockets of every live connection, for [`Proxy::cut_all`].
    open: Mutex<Vec<(TcpStream, TcpStream)>>,
    closed: AtomicBool,
    cuts: AtomicU64,
    accepted: AtomicU64,
}

impl Proxy {
    /// Listens on a free local port, forwarding to `upstream_port` on 127.0.0.1.
    pub fn start(upstream_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("proxy: cannot bind a local port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("proxy: local address: {e}"))
            .port();
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("proxy: non-blocking listener: {e}"));
        let shared = Arc::new(Shared::default());
        let state = shared.clone();
        std::thread::spawn(move || accept_loop(listener, upstream_port, state));
        Proxy { port, shared }
    }

    /// Shuts down both directions of every connection open now: each side sees the
    /// peer hang up. New connections are accepted as before.
    pub fn cut_all(&self) -> usize {
        let open = std::mem::take(&mut *lock(&self.shared.open));
        for (client, upstream) in &open {
            let _ = client.shutdown(Shutdown::Both);
            let _ = upstream.shutdown(Shutdown::Both);
        }
        self.shared.cuts.fetch_add(1, Ordering::Relaxed);
        open.len()
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.cut_all();
    }
}

fn lock(
    m: &Mutex<Vec<(TcpStream, TcpStream)>>,
) -> std::sync::MutexGuard<'_, Vec<(TcpStream, TcpStream)>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, upstream_port: u16, shared: Arc<Shared>) {
    while !shared.closed.load(Ordering::Relaxed) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL);
                continue;
            }
            Err(_) => continue,
        };
        let _ = client.set_nonblocking(false);
        // An upstream that refuses: hang up on the client too, as a dead network would.
        let Ok(upstream) = TcpStream::connect(("127.0.0.1", upstream_port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = upstream.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        let clones = (client.try_clone(), upstream.try_clone());
        let (Ok(c2), Ok(u2)) = clones else { continue };
        if let (Ok(c3), Ok(u3)) = (client.try_clone(), upstream.try_clone()) {
            lock(&shared.open).push((c3, u3));
        }
        std::thread::spawn(move || pump(client, u2));
        std::thread::spawn(move || pump(upstream, c2));
    }
}

/// Copies `from` to `to` until either side ends, then ends both.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_bytes_and_cuts_on_demand() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let upstream = server.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in server.incoming() {
                let Ok(mut conn) = conn else { break };
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16];
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 || conn.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = Proxy::start(upstream);
        let mut c = TcpStream::connect(("127.0.0.1", proxy.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        assert_eq!(proxy.cut_all(), 1);
        // The peer hung up: a read returns end-of-file (or a reset), never data.
        let mut rest = Vec::new();
        let got = c.read_to_end(&mut rest);
        assert!(got.map_or(true, |n| n == 0), "read {rest:?} after the cut");
        assert_eq!(proxy.accepted(), 1);
    }
}
