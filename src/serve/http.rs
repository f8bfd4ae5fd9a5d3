//! The HTTP endpoints: `GET /healthz` (liveness), `GET /readyz` (every slot
//! streaming, or retrying within its budget; JSON per slot) and `GET /metrics`
//! (Prometheus text).
//!
//! Owns the routes and the readiness rule. It never changes a slot; it only reads
//! `SlotStatus`. HTTP/1 only, no TLS: it is meant for the container's health check
//! and an in-VPC scraper.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;

use super::snapshot::{snapshot, Watched};
use crate::metrics::prometheus;
use crate::pipeline::SlotState;

/// `/healthz` fails when the liveness ticker (1 s) has not run for this long: the
/// runtime is starved or blocked.
const LIVENESS_STALE: Duration = Duration::from_secs(10);

pub(super) struct Shared {
    /// The running slots; a config reload (SIGHUP) adds and removes entries.
    pub slots: super::WatchedSlots,
    pub retry_budget: Duration,
    /// Milliseconds since `started` at the last liveness tick.
    pub beat_ms: AtomicU64,
    pub started: Instant,
}

impl Shared {
    pub fn beat(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.beat_ms.store(ms, Ordering::Relaxed);
    }

    fn beat_age(&self) -> Duration {
        let now = self.started.elapsed();
        now.saturating_sub(Duration::from_millis(self.beat_ms.load(Ordering::Relaxed)))
    }
}

/// Accept connections until the task is aborted.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "HTTP endpoint: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(route(&req, &shared)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn route(req: &Request<Incoming>, shared: &Shared) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => {
            let age = shared.beat_age();
            if age < LIVENESS_STALE {
                respond(StatusCode::OK, "text/plain", "ok\n".into())
            } else {
                respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("the event loop has not ticked for {}s\n", age.as_secs()),
                )
            }
        }
        "/readyz" => {
            let (ready, body) = readiness(&super::current(&shared.slots), shared.retry_budget);
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(code, "application/json", format!("{body}\n"))
        }
        "/metrics" => {
            let text = prometheus::render(&snapshot(&super::current(&shared.slots)));
            respond(StatusCode::OK, prometheus::CONTENT_TYPE, text)
        }
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /healthz, /readyz or /metrics\n".into(),
        ),
    }
}

fn respond(code: StatusCode, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Ready when every slot streams, or has been retrying for less than the budget.
/// Starting, stopped and finished slots are not ready.
///
/// The body is for an unauthenticated port: per slot only its name, state, readiness,
/// the retry timing and a short error class ([`crate::pipeline::SlotError::class`]).
/// Error text can quote row data, table and stream names or server messages; it goes
/// to the logs only.
pub fn readiness(slots: &[Watched], budget: Duration) -> (bool, Value) {
    let mut all_ready = !slots.is_empty();
    let rows: Vec<Value> = slots
        .iter()
        .map(|w| {
            let (state, class) = w.status.state_and_class();
            let retrying_for = w.status.metrics.retrying_for();
            let (ready, row) = slot_row(&w.status.slot, &state, class, retrying_for, budget);
            all_ready &= ready;
            row
        })
        .collect();
    (all_ready, json!({"ready": all_ready, "slots": rows}))
}

/// One slot's readiness and its `/readyz` entry.
fn slot_row(
    slot: &str,
    state: &SlotState,
    class: Option<&str>,
    retrying_for: Option<Duration>,
    budget: Duration,
) -> (bool, Value) {
    let (name, ready) = match state {
        SlotState::Streaming => ("streaming", true),
        SlotState::Starting => ("starting", false),
        SlotState::Retrying { .. } => ("retrying", retrying_for.is_none_or(|d| d < budget)),
        SlotState::Stopped { .. } => ("stopped", false),
        SlotState::Finished => ("finished", false),
    };
    let mut row = json!({
        "slot": slot,
        "state": name,
        "ready": ready,
    });
    if let (SlotState::Retrying { .. } | SlotState::Stopped { .. }, Some(class)) = (state, class) {
        row["error_class"] = Value::String(class.to_string());
    }
    if let (SlotState::Retrying { .. }, Some(d)) = (state, retrying_for) {
        row["retrying_for_secs"] = json!(d.as_secs());
        row["retry_budget_secs"] = json!(budget.as_secs());
    }
    (ready, row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readyz_rows_carry_the_error_class_but_no_error_text() {
        // What a decode error's message looks like: it quotes the payload.
        let error = r#"cannot decode wal2json output at 0/16B3748: expected ',' in {"kind":"insert","table":"cards","columnvalues":[42,"4111-1111-1111-1111"]}"#;
        let stopped = SlotState::Stopped {
            error: error.into(),
        };
        let (ready, row) = slot_row(
            "orders_slot",
            &stopped,
            Some("decode"),
            None,
            Duration::ZERO,
        );
        assert!(!ready);
        let text = row.to_string();
        assert_eq!(
            row,
            json!({"slot": "orders_slot", "state": "stopped", "ready": false, "error_class": "decode"}),
            "{text}"
        );
        assert!(!text.contains("4111") && !text.contains("cards"), "{text}");

        let retrying = SlotState::Retrying {
            error: "postgres://cdc@db.internal:5432/shop: connection lost".into(),
        };
        let (ready, row) = slot_row(
            "s",
            &retrying,
            Some("postgres_connection"),
            Some(Duration::from_secs(3)),
            Duration::from_secs(120),
        );
        assert!(ready);
        assert_eq!(row["error_class"], "postgres_connection");
        assert_eq!(row["retrying_for_secs"], 3);
        assert!(!row.to_string().contains("db.internal"), "{row}");
    }
}
