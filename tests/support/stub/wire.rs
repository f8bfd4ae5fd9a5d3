//! The stub's HTTP side: an HTTP/1.1 server on its own thread and runtime (so it keeps
//! serving whatever the test's runtime does), the awsJson1.1 envelopes (PutRecords
//! also in CBOR, answered in CBOR), the
//! control-plane operations (create/delete/list/describe, ListShards in Kinesis' own
//! shape), and `GET /stats/<stream>` with the model's counters as JSON for
//! `scripts/bench`. Faults apply to PutRecords only (`put_records.rs`), so a sink can
//! always start up against a faulty stub.
//!
//! Must never hold the state lock across an await: a stall would block every request.

use std::collections::hash_map::Entry;
use std::convert::Infallible;
use std::net::TcpListener as StdListener;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use super::ledger::unix_micros;
use super::{cbor, lock, put_records, Shared, StubStream};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
pub(super) const ACCOUNT: &str = "000000000000";

/// Binds 127.0.0.1:`port` (0: a free one) and serves from a new thread until
/// `shutdown` fires.
pub(super) fn serve(shared: Shared, port: u16) -> (String, oneshot::Sender<()>) {
    let listener = StdListener::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("stub: bind 127.0.0.1:{port}: {e}"));
    let addr = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("stub: local_addr: {e}"));
    listener
        .set_nonblocking(true)
        .unwrap_or_else(|e| panic!("stub: set_nonblocking: {e}"));
    let (tx, mut rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(format!("kinesis-stub-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("stub: runtime: {e}"));
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)
                    .unwrap_or_else(|e| panic!("stub: listener: {e}"));
                loop {
                    tokio::select! {
                        _ = &mut rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let _ = stream.set_nodelay(true);
                            let shared = shared.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| handle(shared.clone(), req));
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
        })
        .unwrap_or_else(|e| panic!("stub: thread: {e}"));
    (format!("http://{addr}"), tx)
}

pub(super) type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

pub(super) fn ok(value: &impl Serialize) -> Reply {
    reply(
        StatusCode::OK,
        serde_json::to_vec(value).unwrap_or_default(),
    )
}

pub(super) fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    let body = json!({ "__type": kind, "message": message });
    let mut response = reply(status, body.to_string().into_bytes());
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

pub(super) fn not_found(stream: &str) -> Reply {
    error(
        StatusCode::BAD_REQUEST,
        "ResourceNotFoundException",
        &format!("Stream {stream} under account {ACCOUNT} not found."),
    )
}

fn arn(stream: &str) -> String {
    format!("arn:aws:kinesis:us-east-1:{ACCOUNT}:stream/{stream}")
}

/// The stream a request names, by StreamName or StreamARN.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
pub(super) struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_count: Option<u32>,
    shard_filter: Option<ShardFilter>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct ShardFilter {
    r#type: Option<String>,
}

impl StreamRef {
    /// A stream named by a CBOR request's `StreamName` or `StreamARN`.
    pub(super) fn named(name: Option<String>, arn: Option<String>) -> StreamRef {
        StreamRef {
            stream_name: name,
            stream_arn: arn,
            ..StreamRef::default()
        }
    }

    pub(super) fn name(&self) -> String {
        match (&self.stream_name, &self.stream_arn) {
            (Some(name), _) => name.clone(),
            (None, Some(arn)) => arn.rsplit('/').next().unwrap_or_default().to_string(),
            (None, None) => String::new(),
        }
    }
}

async fn handle(shared: Shared, req: Request<Incoming>) -> Result<Reply, Infallible> {
    if req.method() == hyper::Method::GET {
        let path = req.uri().path().to_string();
        return Ok(match path.strip_prefix("/stats/") {
            Some(stream) => ok(&stream_stats_json(&shared, stream)),
            None => error(
                StatusCode::NOT_FOUND,
                "NotFound",
                &format!("no such path {path:?}; try /stats/<stream>"),
            ),
        });
    }
    lock(&shared).stats.requests += 1;
    let cbor = req
        .headers()
        .get("content-type")
        .is_some_and(|t| t.as_bytes().starts_with(cbor::CONTENT_TYPE.as_bytes()));
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            ))
        }
    };
    if target == "PutRecords" {
        let reply = put_records::put_records(&shared, &body, cbor).await;
        return Ok(if cbor { as_cbor(reply).await } else { reply });
    }
    let stream: StreamRef = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => {
            return Ok(error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            ))
        }
    };
    Ok(match target.as_str() {
        "CreateStream" => {
            let name = stream.name();
            match lock(&shared).streams.entry(name) {
                Entry::Occupied(e) => {
                    error(StatusCode::BAD_REQUEST, "ResourceInUseException", &format!("Stream {} exists", e.key()))
                }
                Entry::Vacant(e) => {
                    e.insert(StubStream::new(stream.shard_count.unwrap_or(1), false));
                    ok(&json!({}))
                }
            }
        }
        "DeleteStream" => match lock(&shared).streams.remove(&stream.name()) {
            Some(_) => ok(&json!({})),
            None => not_found(&stream.name()),
        },
        "ListStreams" => {
            let mut names: Vec<String> = lock(&shared).streams.keys().cloned().collect();
            names.sort();
            ok(&json!({ "StreamNames": names, "HasMoreStreams": false }))
        }
        "DescribeStreamSummary" | "DescribeStream" | "ListShards" => describe(&shared, &target, &stream),
        other => error(
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            &format!("the Kinesis stub does not implement {other:?}; add it to tests/support/stub/wire.rs"),
        ),
    })
}

/// An answer (written in JSON) as Kinesis answers a CBOR request: the same document
/// in CBOR.
async fn as_cbor(reply: Reply) -> Reply {
    let (mut parts, body) = reply.into_parts();
    let json = body
        .collect()
        .await
        .unwrap_or_else(|never| match never {})
        .to_bytes();
    match cbor::from_json(&json) {
        Some(body) => {
            parts.headers.insert(
                "content-type",
                hyper::header::HeaderValue::from_static(cbor::CONTENT_TYPE),
            );
            Response::from_parts(parts, Full::new(Bytes::from(body)))
        }
        None => Response::from_parts(parts, Full::new(json)),
    }
}

fn describe(shared: &Shared, target: &str, stream: &StreamRef) -> Reply {
    let name = stream.name();
    let mut state = lock(shared);
    state.auto_create(&name);
    let Some(s) = state.streams.get(&name) else {
        return not_found(&name);
    };
    let created = s
        .created
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let latest_only = stream
        .shard_filter
        .as_ref()
        .and_then(|f| f.r#type.as_deref())
        .is_some_and(|t| t == "AT_LATEST");
    let shards: Vec<_> = s
        .shards
        .all
        .iter()
        .filter(|shard| shard.is_open() || !latest_only)
        .map(|shard| {
            let mut range = json!({ "StartingSequenceNumber": format!("{:056}", 0) });
            if let Some(last) = shard.closed_at {
                range["EndingSequenceNumber"] = json!(format!("{last:056}"));
            }
            let mut v = json!({
                "ShardId": shard.id(),
                "HashKeyRange": {
                    "StartingHashKey": shard.start.to_string(),
                    "EndingHashKey": shard.end.to_string(),
                },
                "SequenceNumberRange": range,
            });
            if let Some(parent) = &shard.parent {
                v["ParentShardId"] = json!(parent);
            }
            v
        })
        .collect();
    let mode = if s.on_demand {
        "ON_DEMAND"
    } else {
        "PROVISIONED"
    };
    let common = json!({
        "StreamName": name,
        "StreamARN": arn(&name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": { "StreamMode": mode },
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": created,
        "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
        "EncryptionType": "NONE",
        "MaxRecordSizeInKiB": super::MAX_RECORD_BYTES / 1024,
    });
    let mut description = common;
    match target {
        "ListShards" => ok(&json!({ "Shards": shards })),
        "DescribeStream" => {
            description["Shards"] = json!(shards);
            description["HasMoreShards"] = json!(false);
            ok(&json!({ "StreamDescription": description }))
        }
        _ => {
            description["OpenShardCount"] = json!(s.shards.open().count());
            description["ConsumerCount"] = json!(0);
            ok(&json!({ "StreamDescriptionSummary": description }))
        }
    }
}

/// `GET /stats/<stream>`: the stream's counters, its shards', latency percentiles and
/// the distinct (commit_lsn, seq) pairs that arrived per commit LSN (numeric LSNs).
fn stream_stats_json(shared: &Shared, name: &str) -> serde_json::Value {
    let state = lock(shared);
    let Some(s) = state.streams.get(name) else {
        return json!({
            "stream": name, "exists": false, "requests": 0, "records": 0, "user_records": 0,
            "throttled_records": 0, "order_violations": 0, "duplicates": 0, "shards": [],
            "distinct_by_commit_lsn": [],
        });
    };
    let st = &s.ledger.stats;
    let secs = |t: Option<std::time::SystemTime>| t.map(|t| unix_micros(t) as f64 / 1e6);
    let shards: Vec<_> = s
        .shards
        .all
        .iter()
        .map(|sh| {
            json!({
                "shard_id": sh.id(),
                "open": sh.is_open(),
                "accepted_records": sh.stats.accepted_records,
                "accepted_user_records": sh.stats.accepted_user_records,
                "accepted_bytes": sh.stats.accepted_bytes,
                "throttled_records": sh.stats.throttled_records,
            })
        })
        .collect();
    let mut sorted = s.ledger.latency_us.clone();
    let distinct = s.ledger.distinct_by_commit_lsn();
    let body = json!({
        "stream": name,
        "exists": true,
        "requests": st.put_records_requests,
        "records": st.accepted_records,
        "aggregated_records": st.aggregated_records,
        "user_records": st.user_records,
        "throttled_records": st.throttled_records,
        "order_violations": st.order_violations,
        "duplicates": st.duplicates,
        "first_arrival_unix": secs(st.first_arrival),
        "last_arrival_unix": secs(st.last_arrival),
        "shards": shards,
        "distinct_by_commit_lsn": distinct,
    });
    drop(state);
    sorted.sort_unstable();
    let pick = |q: f64| -> Option<f64> {
        let last = sorted.len().checked_sub(1)?;
        let index = ((last as f64) * q).round() as usize;
        sorted.get(index.min(last)).map(|us| *us as f64 / 1000.0)
    };
    let mut body = body;
    body["latency"] = json!({
        "samples": sorted.len(),
        "p50_ms": pick(0.50),
        "p99_ms": pick(0.99),
        "max_ms": pick(1.0),
    });
    body
}
