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

use crate::metrics::{self, prometheus, Watched};
use crate::pipeline::SlotState;

/// `/healthz` fails when the liveness ticker (1 s) has not run for this long: the
/// runtime is starved or blocked.
const LIVENESS_STALE: Duration = Duration::from_secs(10);

pub(super) struct Shared {
    pub slots: Vec<Watched>,
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
            let (ready, body) = readiness(&shared.slots, shared.retry_budget);
            let code = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            respond(code, "application/json", format!("{body}\n"))
        }
        "/metrics" => {
            let text = prometheus::render(&metrics::snapshot(&shared.slots));
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
pub fn readiness(slots: &[Watched], budget: Duration) -> (bool, Value) {
    let mut all_ready = !slots.is_empty();
    let rows: Vec<Value> = slots
        .iter()
        .map(|w| {
            let state = w.status.state();
            let retrying_for = w.status.metrics.retrying_for();
            let (name, error, ready) = match &state {
                SlotState::Streaming => ("streaming", None, true),
                SlotState::Starting => ("starting", None, false),
                SlotState::Retrying { error } => (
                    "retrying",
                    Some(error.clone()),
                    retrying_for.is_none_or(|d| d < budget),
                ),
                SlotState::Stopped { error } => ("stopped", Some(error.clone()), false),
                SlotState::Finished => ("finished", None, false),
            };
            all_ready &= ready;
            let mut row = json!({
                "slot": w.status.slot,
                "stream": w.stream,
                "state": name,
                "ready": ready,
            });
            if let Some(e) = error {
                row["error"] = Value::String(e);
            }
            if let (SlotState::Retrying { .. }, Some(d)) = (&state, retrying_for) {
                row["retrying_for_secs"] = json!(d.as_secs());
                row["retry_budget_secs"] = json!(budget.as_secs());
            }
            row
        })
        .collect();
    (all_ready, json!({"ready": all_ready, "slots": rows}))
}
