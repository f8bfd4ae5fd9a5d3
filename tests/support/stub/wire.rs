//! The stub's HTTP side: an HTTP/1.1 server on its own thread and runtime (so it keeps
//! serving whatever the test's runtime does), the awsJson1.1 request/response shapes
//! and the fault script applied to PutRecords. Faults apply to PutRecords only, so a
//! sink can always start up (describe/list) against a faulty stub.
//!
//! Must never hold the state lock across an await: a stall would block every request.

use std::convert::Infallible;
use std::net::TcpListener as StdListener;
use std::time::{Instant, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use super::{
    lock, shard_for, shard_id, shard_ranges, RecordError, Shared, StallMode, StubRecord, StubStream,
    MAX_RECORDS_PER_REQUEST, MAX_RECORD_BYTES, MAX_REQUEST_BYTES,
};

const TARGET_PREFIX: &str = "Kinesis_20131202.";
const ACCOUNT: &str = "000000000000";

/// Binds a free local port and serves from a new thread until `shutdown` fires.
pub(super) fn serve(shared: Shared) -> (String, oneshot::Sender<()>) {
    let listener = StdListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("stub: bind: {e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("stub: local_addr: {e}"));
    listener.set_nonblocking(true).unwrap_or_else(|e| panic!("stub: set_nonblocking: {e}"));
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

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: Vec<u8>) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"));
    response
}

fn ok(value: &impl Serialize) -> Reply {
    reply(StatusCode::OK, serde_json::to_vec(value).unwrap_or_default())
}

fn error(status: StatusCode, kind: &str, message: &str) -> Reply {
    let body = json!({ "__type": kind, "message": message });
    let mut response = reply(status, body.to_string().into_bytes());
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

fn not_found(stream: &str) -> Reply {
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
struct StreamRef {
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
    shard_count: Option<u32>,
}

impl StreamRef {
    fn name(&self) -> String {
        match (&self.stream_name, &self.stream_arn) {
            (Some(name), _) => name.clone(),
            (None, Some(arn)) => arn.rsplit('/').next().unwrap_or_default().to_string(),
            (None, None) => String::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRecordsInput {
    #[serde(flatten)]
    stream: StreamRef,
    #[serde(default)]
    records: Vec<PutEntry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutEntry {
    #[serde(default)]
    data: String,
    #[serde(default)]
    partition_key: String,
    explicit_hash_key: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    sequence_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
}

async fn handle(shared: Shared, req: Request<Incoming>) -> Result<Reply, Infallible> {
    lock(&shared).stats.requests += 1;
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "SerializationException", &e.to_string())),
    };
    if target == "PutRecords" {
        return Ok(put_records(&shared, &body).await);
    }
    let stream: StreamRef = match serde_json::from_slice(&body) {
        Ok(s) => s,
        Err(e) => return Ok(error(StatusCode::BAD_REQUEST, "SerializationException", &e.to_string())),
    };
    Ok(match target.as_str() {
        "CreateStream" => {
            let mut state = lock(&shared);
            let name = stream.name();
            if state.streams.contains_key(&name) {
                error(StatusCode::BAD_REQUEST, "ResourceInUseException", &format!("Stream {name} already exists"))
            } else {
                state.streams.insert(name, StubStream::new(stream.shard_count.unwrap_or(1)));
                ok(&json!({}))
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

fn describe(shared: &Shared, target: &str, stream: &StreamRef) -> Reply {
    let name = stream.name();
    let state = lock(shared);
    let Some(s) = state.streams.get(&name) else {
        return not_found(&name);
    };
    let created = s.created.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    let shards: Vec<_> = shard_ranges(s.shards)
        .into_iter()
        .enumerate()
        .map(|(i, (start, end))| {
            json!({
                "ShardId": shard_id(i as u32),
                "HashKeyRange": { "StartingHashKey": start.to_string(), "EndingHashKey": end.to_string() },
                "SequenceNumberRange": { "StartingSequenceNumber": format!("{:056}", 0) },
            })
        })
        .collect();
    let common = json!({
        "StreamName": name,
        "StreamARN": arn(&name),
        "StreamStatus": "ACTIVE",
        "StreamModeDetails": { "StreamMode": "PROVISIONED" },
        "RetentionPeriodHours": 24,
        "StreamCreationTimestamp": created,
        "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
        "EncryptionType": "NONE",
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
            description["OpenShardCount"] = json!(s.shards);
            description["ConsumerCount"] = json!(0);
            ok(&json!({ "StreamDescriptionSummary": description }))
        }
    }
}

/// What the fault script decided for one PutRecords call before any record is stored.
enum Verdict {
    Throttle,
    ServerError(u16),
    Proceed { stall: Option<(Instant, StallMode)> },
}

async fn put_records(shared: &Shared, body: &[u8]) -> Reply {
    let input: PutRecordsInput = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => return error(StatusCode::BAD_REQUEST, "SerializationException", &e.to_string()),
    };
    let name = input.stream.name();
    let mut entries = Vec::with_capacity(input.records.len());
    let mut request_bytes = 0usize;
    for (i, entry) in input.records.iter().enumerate() {
        let Some(data) = decode_base64(&entry.data) else {
            return invalid(shared, &format!("Records[{i}].Data is not valid base64"));
        };
        let size = data.len() + entry.partition_key.len();
        if entry.partition_key.is_empty() || entry.partition_key.chars().count() > 256 {
            return invalid(shared, &format!("Records[{i}].PartitionKey must be 1 to 256 characters"));
        }
        if size > MAX_RECORD_BYTES {
            return invalid(shared, &format!("Records[{i}] is {size} bytes, above the 1 MiB record limit"));
        }
        request_bytes += size;
        entries.push(data);
    }

    let verdict = {
        let mut state = lock(shared);
        state.stats.put_records_requests += 1;
        state.stats.records_per_request.push(input.records.len());
        if !state.streams.contains_key(&name) {
            state.stats.not_found += 1;
            return not_found(&name);
        }
        if input.records.is_empty() || input.records.len() > MAX_RECORDS_PER_REQUEST {
            drop(state);
            let n = input.records.len();
            return invalid(shared, &format!("PutRecords carries {n} records; Kinesis takes 1 to 500"));
        }
        if request_bytes > MAX_REQUEST_BYTES {
            drop(state);
            return invalid(shared, &format!("PutRecords is {request_bytes} bytes, above the 5 MiB limit"));
        }
        let stall = state.faults.stall.filter(|(until, _)| *until > Instant::now());
        if stall.is_some() {
            state.stats.stalled_requests += 1;
        }
        let throttle_rate = state.faults.throttle_rate;
        if state.faults.throttle_next > 0 || state.rng.chance(throttle_rate) {
            state.faults.throttle_next = state.faults.throttle_next.saturating_sub(1);
            Verdict::Throttle
        } else if state.faults.server_error_next > 0 {
            state.faults.server_error_next -= 1;
            Verdict::ServerError(state.faults.server_error_status)
        } else {
            Verdict::Proceed { stall }
        }
    };

    let stall = match verdict {
        Verdict::Throttle => {
            lock(shared).stats.throttled_requests += 1;
            return error(
                StatusCode::BAD_REQUEST,
                "ProvisionedThroughputExceededException",
                &format!("Rate exceeded for stream {name} under account {ACCOUNT}."),
            );
        }
        Verdict::ServerError(status) => {
            lock(shared).stats.server_errors += 1;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let kind = if status == StatusCode::SERVICE_UNAVAILABLE { "ServiceUnavailable" } else { "InternalFailure" };
            return error(status, kind, "scripted server error");
        }
        Verdict::Proceed { stall } => stall,
    };
    match stall {
        Some((until, StallMode::Unavailable)) => {
            tokio::time::sleep_until(until.into()).await;
            lock(shared).stats.server_errors += 1;
            return error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", "scripted stall");
        }
        Some((until, StallMode::Slow)) => tokio::time::sleep_until(until.into()).await,
        _ => {}
    }

    let (results, failed) = {
        let mut state = lock(shared);
        let rate = state.faults.record_failure_rate;
        let kind = state.faults.record_error;
        let now = Instant::now();
        let mut results = Vec::with_capacity(entries.len());
        let mut failed = 0usize;
        for (entry, data) in input.records.into_iter().zip(entries) {
            if state.rng.chance(rate) {
                let throughput = match kind {
                    RecordError::Throughput => true,
                    RecordError::Internal => false,
                    RecordError::Mixed => state.rng.chance(0.5),
                };
                let (code, message) = if throughput {
                    ("ProvisionedThroughputExceededException", format!("Rate exceeded for stream {name}."))
                } else {
                    ("InternalFailure", "Internal service failure.".to_string())
                };
                failed += 1;
                results.push(PutResult {
                    sequence_number: None,
                    shard_id: None,
                    error_code: Some(code),
                    error_message: Some(message),
                });
                continue;
            }
            let Some(stream) = state.streams.get_mut(&name) else {
                // Deleted while stalled.
                return not_found(&name);
            };
            let shard = shard_id(shard_for(stream.shards, &entry.partition_key, entry.explicit_hash_key.as_deref()));
            let sequence_number = format!("{:056}", stream.next_sequence);
            stream.next_sequence += 1;
            stream.records.push(StubRecord {
                partition_key: entry.partition_key,
                data,
                shard_id: shard.clone(),
                sequence_number: sequence_number.clone(),
                arrived: now,
            });
            results.push(PutResult {
                sequence_number: Some(sequence_number),
                shard_id: Some(shard),
                error_code: None,
                error_message: None,
            });
        }
        state.stats.failed_records += failed as u64;
        state.stats.accepted_records += (results.len() - failed) as u64;
        (results, failed)
    };
    if let Some((until, StallMode::LostResponse)) = stall {
        tokio::time::sleep_until(until.into()).await;
    }
    ok(&json!({ "FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE" }))
}

fn invalid(shared: &Shared, message: &str) -> Reply {
    lock(shared).stats.invalid_requests += 1;
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// Standard base64 with padding, as the SDK encodes blobs; `None` if malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let bytes = text.as_bytes();
    if bytes.len() % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
    let chunks = bytes.len() / 4;
    for (i, chunk) in bytes.chunks_exact(4).enumerate() {
        let pad = if i + 1 == chunks { chunk.iter().rev().take_while(|&&c| c == b'=').count() } else { 0 };
        if pad > 2 {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let decoded = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&decoded[..3 - pad]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode_base64;

    #[test]
    fn base64_decodes_padding_and_rejects_garbage() {
        assert_eq!(decode_base64("").as_deref(), Some(&b""[..]));
        assert_eq!(decode_base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(decode_base64("aGk=").as_deref(), Some(&b"hi"[..]));
        assert_eq!(decode_base64("aGV5").as_deref(), Some(&b"hey"[..]));
        assert_eq!(decode_base64("/+8=").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(decode_base64("aGk"), None);
        assert_eq!(decode_base64("a*k="), None);
        assert_eq!(decode_base64("a==="), None);
        assert_eq!(decode_base64("aG=k"), None);
    }
}
