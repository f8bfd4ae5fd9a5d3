//! A lean Kinesis stand-in for `scripts/bench`. It answers the awsJson1.1 calls the
//! streamer makes (`DescribeStreamSummary`, `ListShards`, `PutRecords`) for any stream
//! name, counts records per stream with their arrival times, and, for streams whose name
//! starts with `lat`, measures commit-to-acceptance latency: the record's `timestamp`
//! field (the transaction's commit time) against the moment its request arrived, both on
//! this machine's clock. `GET /stats/<stream>` answers the figures as JSON.
//!
//! Owns: per-stream counters and latency samples, nothing else. Must never fail or store
//! a record, nor do per-record work on throughput streams: the benchmark measures the
//! streamer, not the sink. It proves nothing about correctness; tests/support/stub.rs
//! does that.
//!
//! Usage: `bench_sink --port PORT` (serves 127.0.0.1:PORT until SIGTERM/SIGINT).

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::json;

const TARGET_PREFIX: &str = "Kinesis_20131202.";
/// Streams with this prefix get per-record latency samples; others only counters.
const LATENCY_PREFIX: &str = "lat";
/// Base64 characters decoded per record to find `timestamp`: the record format puts it
/// before `data`, so a short prefix covers it without decoding the row.
const TIMESTAMP_SCAN_CHARS: usize = 512;

#[derive(Default)]
struct StreamStats {
    records: u64,
    requests: u64,
    first_arrival: Option<SystemTime>,
    last_arrival: Option<SystemTime>,
    latencies_us: Vec<i64>,
    unparsed_timestamps: u64,
}

#[derive(Default)]
struct State {
    streams: HashMap<String, StreamStats>,
    next_sequence: u64,
}

type Shared = Arc<Mutex<State>>;

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Deserialize)]
struct PutRecordsInput<'a> {
    #[serde(rename = "StreamName", borrow, default)]
    stream_name: Option<Cow<'a, str>>,
    #[serde(rename = "StreamARN", borrow, default)]
    stream_arn: Option<Cow<'a, str>>,
    #[serde(rename = "Records", borrow, default)]
    records: Vec<PutEntry<'a>>,
}

#[derive(Deserialize)]
struct PutEntry<'a> {
    #[serde(rename = "Data", borrow, default)]
    data: Cow<'a, str>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct StreamRef {
    #[serde(rename = "StreamName")]
    stream_name: Option<String>,
    #[serde(rename = "StreamARN")]
    stream_arn: Option<String>,
}

fn stream_name(name: Option<&str>, arn: Option<&str>) -> String {
    match (name, arn) {
        (Some(n), _) => n.to_string(),
        (None, Some(a)) => a.rsplit('/').next().unwrap_or_default().to_string(),
        (None, None) => String::new(),
    }
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port: Option<u16> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => port = args.next().and_then(|p| p.parse().ok()),
            other => anyhow::bail!(
                "bench_sink: unknown argument {other:?}; usage: bench_sink --port PORT"
            ),
        }
    }
    let port =
        port.ok_or_else(|| anyhow::anyhow!("bench_sink: --port PORT (1-65535) is required"))?;
    // One thread: the sink must leave the machine's cores to the streamer and PostgreSQL.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(port))
}

async fn serve(port: u16) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("bench_sink: cannot listen on 127.0.0.1:{port}: {e}"))?;
    let shared: Shared = Arc::new(Mutex::new(State::default()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
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
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, body: String) -> Reply {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        hyper::header::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    response
}

fn error(kind: &str, message: &str) -> Reply {
    let mut response = reply(
        StatusCode::BAD_REQUEST,
        json!({ "__type": kind, "message": message }).to_string(),
    );
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        response.headers_mut().insert("x-amzn-errortype", v);
    }
    response
}

async fn handle(shared: Shared, req: Request<Incoming>) -> Result<Reply, Infallible> {
    if req.method() == Method::GET {
        let path = req.uri().path().to_string();
        return Ok(match path.strip_prefix("/stats/") {
            Some(stream) => reply(StatusCode::OK, stats(&shared, stream)),
            None => reply(
                StatusCode::NOT_FOUND,
                format!("{{\"error\":\"no such path {path:?}; try /stats/<stream>\"}}"),
            ),
        });
    }
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .unwrap_or_default()
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) => return Ok(error("SerializationException", &e.to_string())),
    };
    let arrived = SystemTime::now();
    Ok(match target.as_str() {
        "PutRecords" => put_records(&shared, &body, arrived),
        "DescribeStreamSummary" | "ListShards" => {
            match serde_json::from_slice::<StreamRef>(&body) {
                Ok(r) => describe(
                    &target,
                    &stream_name(r.stream_name.as_deref(), r.stream_arn.as_deref()),
                ),
                Err(e) => error("SerializationException", &e.to_string()),
            }
        }
        other => error(
            "UnknownOperationException",
            &format!("bench_sink does not implement {other:?}; add it to examples/bench_sink.rs"),
        ),
    })
}

fn describe(target: &str, name: &str) -> Reply {
    let shard = json!({
        "ShardId": "shardId-000000000000",
        "HashKeyRange": { "StartingHashKey": "0", "EndingHashKey": u128::MAX.to_string() },
        "SequenceNumberRange": { "StartingSequenceNumber": "0" },
    });
    let body = if target == "ListShards" {
        json!({ "Shards": [shard] })
    } else {
        json!({ "StreamDescriptionSummary": {
            "StreamName": name,
            "StreamARN": format!("arn:aws:kinesis:us-east-1:000000000000:stream/{name}"),
            "StreamStatus": "ACTIVE",
            "StreamModeDetails": { "StreamMode": "ON_DEMAND" },
            "RetentionPeriodHours": 24,
            "StreamCreationTimestamp": 0.0,
            "EnhancedMonitoring": [{ "ShardLevelMetrics": [] }],
            "EncryptionType": "NONE",
            "OpenShardCount": 1,
            "ConsumerCount": 0,
        }})
    };
    reply(StatusCode::OK, body.to_string())
}

fn put_records(shared: &Shared, body: &[u8], arrived: SystemTime) -> Reply {
    let input: PutRecordsInput<'_> = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => return error("SerializationException", &format!("PutRecords body: {e}")),
    };
    let name = stream_name(input.stream_name.as_deref(), input.stream_arn.as_deref());
    let count = input.records.len();
    let mut samples = Vec::new();
    let mut unparsed = 0u64;
    if name.starts_with(LATENCY_PREFIX) {
        let arrived_us = unix_micros(arrived);
        for entry in &input.records {
            match commit_micros(&entry.data) {
                Some(committed) => samples.push(arrived_us - committed),
                None => unparsed += 1,
            }
        }
    }
    let first_sequence = {
        let mut state = lock(shared);
        let first = state.next_sequence;
        state.next_sequence += count as u64;
        let s = state.streams.entry(name).or_default();
        s.records += count as u64;
        s.requests += 1;
        s.first_arrival.get_or_insert(arrived);
        s.last_arrival = Some(arrived);
        s.latencies_us.extend(samples);
        s.unparsed_timestamps += unparsed;
        first
    };
    let mut out = String::with_capacity(40 + count * 72);
    out.push_str("{\"FailedRecordCount\":0,\"Records\":[");
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"SequenceNumber\":\"{:056}\",\"ShardId\":\"shardId-000000000000\"}}",
            first_sequence + i as u64
        );
    }
    out.push_str("]}");
    reply(StatusCode::OK, out)
}

fn stats(shared: &Shared, stream: &str) -> String {
    let state = lock(shared);
    let Some(s) = state.streams.get(stream) else {
        return json!({ "stream": stream, "records": 0, "requests": 0 }).to_string();
    };
    let secs = |t: Option<SystemTime>| t.map(|t| unix_micros(t) as f64 / 1e6);
    let (records, requests, unparsed) = (s.records, s.requests, s.unparsed_timestamps);
    let (first, last) = (secs(s.first_arrival), secs(s.last_arrival));
    let mut sorted = s.latencies_us.clone();
    drop(state);
    sorted.sort_unstable();
    let pick = |q: f64| -> Option<f64> {
        let last = sorted.len().checked_sub(1)?;
        let index = ((last as f64) * q).round() as usize;
        sorted.get(index.min(last)).map(|us| *us as f64 / 1000.0)
    };
    json!({
        "stream": stream,
        "records": records,
        "requests": requests,
        "first_arrival_unix": first,
        "last_arrival_unix": last,
        "latency": {
            "samples": sorted.len(),
            "unparsed": unparsed,
            "p50_ms": pick(0.50),
            "p99_ms": pick(0.99),
            "max_ms": pick(1.0),
        },
    })
    .to_string()
}

fn unix_micros(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The commit time of a record, from a base64 `Data` blob's `"timestamp":"..."` field.
fn commit_micros(data: &str) -> Option<i64> {
    let end = data.len().min(TIMESTAMP_SCAN_CHARS) & !3;
    let prefix = decode_base64(data.get(..end)?)?;
    let text = String::from_utf8_lossy(&prefix);
    const KEY: &str = "\"timestamp\":\"";
    let start = text.find(KEY)? + KEY.len();
    let rest = text.get(start..)?;
    parse_pg_timestamp(rest.get(..rest.find('"')?)?)
}

/// Standard padded base64 (how the SDK sends blobs); `None` when malformed.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    }
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    for chunk in text.as_bytes().chunks(4) {
        let digits: Vec<u8> = chunk.iter().copied().take_while(|&c| c != b'=').collect();
        let mut acc = 0u32;
        for &c in &digits {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * (4 - digits.len() as u32);
        let bytes = acc.to_be_bytes();
        let keep = digits.len().saturating_sub(1).min(3);
        out.extend_from_slice(bytes.get(1..1 + keep)?);
    }
    Some(out)
}

/// `2026-11-23 23:29:15.677976+00` (PostgreSQL's ISO style, any offset such as `+05:30`
/// or `-08`) as microseconds since the Unix epoch.
fn parse_pg_timestamp(text: &str) -> Option<i64> {
    let num = |s: &str| s.parse::<i64>().ok();
    let (date, time) = text.split_once(' ')?;
    let mut ymd = date.splitn(3, '-');
    let (y, m, d) = (num(ymd.next()?)?, num(ymd.next()?)?, num(ymd.next()?)?);
    let sign_at = time.find(['+', '-'])?;
    let (clock, offset) = time.split_at(sign_at);
    let mut hms = clock.splitn(3, ':');
    let (h, mi, s) = (num(hms.next()?)?, num(hms.next()?)?, hms.next()?);
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    let padded = format!("{frac:0<6}");
    let frac_us = num(padded.get(..6)?)?;
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut off = offset.get(1..)?.splitn(3, ':');
    let off_secs = num(off.next()?)? * 3600 + off.next().map_or(Some(0), num)? * 60;
    let days = days_from_civil(y, m, d);
    let local = ((days * 24 + h) * 60 + mi) * 60 + num(whole)?;
    Some((local - sign * off_secs) * 1_000_000 + frac_us)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_postgres_timestamps_with_any_offset() {
        assert_eq!(parse_pg_timestamp("1970-01-01 00:00:00+00"), Some(0));
        assert_eq!(
            parse_pg_timestamp("1970-01-01 00:00:01.5+00"),
            Some(1_500_000)
        );
        // 2026-11-23 23:29:15.677976 UTC, checked with `date -d ... +%s`: 1795476555.
        assert_eq!(
            parse_pg_timestamp("2026-11-23 23:29:15.677976+00"),
            Some(1_795_476_555_677_976)
        );
        assert_eq!(
            parse_pg_timestamp("2026-11-24 05:29:15.677976+05:30"),
            Some(1_795_476_555_677_976 + 30 * 60 * 1_000_000)
        );
        assert_eq!(
            parse_pg_timestamp("2026-11-23 15:29:15.677976-08"),
            Some(1_795_476_555_677_976)
        );
        assert_eq!(parse_pg_timestamp("not a time"), None);
        assert_eq!(parse_pg_timestamp("2026-11-23 23:29:15"), None);
    }

    #[test]
    fn finds_the_commit_time_in_a_base64_record() {
        // base64 of {"kind":"insert","timestamp":"1970-01-01 00:00:02+00","data":{}}
        let data = "eyJraW5kIjoiaW5zZXJ0IiwidGltZXN0YW1wIjoiMTk3MC0wMS0wMSAwMDowMDowMiswMCIsImRhdGEiOnt9fQ==";
        assert_eq!(commit_micros(data), Some(2_000_000));
        assert_eq!(decode_base64("YWJj").as_deref(), Some(&b"abc"[..]));
        assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("Y!=="), None);
        assert_eq!(commit_micros("bm90IGpzb24="), None);
    }
}
