//! A minimal AWS Lambda runtime API (`/2018-06-01/runtime/...`) for running a Lambda
//! binary locally, exactly as the Lambda service drives its `bootstrap`.
//!
//! Owns one queue of events: each `GET .../invocation/next` takes the next event (and
//! blocks once they are used up, as the real service does between invocations);
//! `POST .../invocation/<id>/response` and `.../error` record the answer. HTTP/1.1 with
//! keep-alive, `Content-Length` bodies only (what the runtime client sends). It never
//! talks to AWS.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What the function answered to one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `/response`: the handler's JSON.
    Response(serde_json::Value),
    /// `/error` (or `/init/error`): the error document (`errorType`, `errorMessage`).
    Error(serde_json::Value),
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, String)>,
    outcomes: Vec<(String, Outcome)>,
}

/// A running emulator; `address()` is the value for `AWS_LAMBDA_RUNTIME_API`.
pub struct RuntimeApi {
    port: u16,
    state: Arc<(Mutex<State>, Condvar)>,
}

impl RuntimeApi {
    /// Start serving `events` (JSON texts) in order; request ids are `req-0`, `req-1`, ...
    pub fn start(events: &[&str]) -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the runtime API emulator");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new((Mutex::new(State::default()), Condvar::new()));
        {
            let mut s = state.0.lock().unwrap();
            for (i, e) in events.iter().enumerate() {
                s.pending.push_back((format!("req-{i}"), e.to_string()));
            }
        }
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || serve(conn, shared));
            }
        });
        RuntimeApi { port, state }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Wait until `n` invocations were answered; returns all outcomes in order.
    pub fn wait_outcomes(&self, n: usize, timeout: Duration) -> Vec<(String, Outcome)> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.state;
        let mut s = lock.lock().unwrap();
        while s.outcomes.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            s = cvar.wait_timeout(s, left).unwrap().0;
        }
        s.outcomes.clone()
    }
}

struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

fn serve(conn: TcpStream, state: Arc<(Mutex<State>, Condvar)>) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    while let Some(req) = read_request(&mut reader) {
        let reply = handle(&req, &state);
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

fn handle(req: &Request, state: &Arc<(Mutex<State>, Condvar)>) -> Vec<u8> {
    let (lock, cvar) = &**state;
    const BASE: &str = "/2018-06-01/runtime";
    if req.method == "GET" && req.path == format!("{BASE}/invocation/next") {
        let next = lock.lock().unwrap().pending.pop_front();
        let Some((id, event)) = next else {
            // No more events: hold the request like the service does between invocations.
            loop {
                std::thread::park();
            }
        };
        let deadline_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis()
            + 300_000;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline_ms}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:pg-cdc-admin\r\nLambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000\r\nContent-Length: {}\r\n\r\n",
            event.len()
        );
        return [head.into_bytes(), event.into_bytes()].concat();
    }
    let body: serde_json::Value =
        serde_json::from_slice(&req.body).unwrap_or(serde_json::Value::Null);
    let rest = req.path.strip_prefix(BASE).unwrap_or("");
    let outcome = if let Some(id) = rest
        .strip_prefix("/invocation/")
        .and_then(|r| r.strip_suffix("/response"))
    {
        Some((id.to_string(), Outcome::Response(body)))
    } else if let Some(id) = rest
        .strip_prefix("/invocation/")
        .and_then(|r| r.strip_suffix("/error"))
    {
        Some((id.to_string(), Outcome::Error(body)))
    } else if rest == "/init/error" {
        Some(("init".to_string(), Outcome::Error(body)))
    } else {
        None
    };
    match outcome {
        Some(o) => {
            lock.lock().unwrap().outcomes.push(o);
            cvar.notify_all();
            b"HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}\n".to_vec()
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}
