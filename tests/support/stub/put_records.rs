//! PutRecords, the one operation the fault script applies to: validation against the
//! Kinesis limits, whole-request faults (throttle, 5xx, stall), then per-record
//! failures, storing exactly the records answered as accepted.
//!
//! Must never hold the state lock across an await: a stall would block every request.

use std::time::Instant;

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::wire::{error, not_found, ok, Reply, StreamRef, ACCOUNT};
use super::{
    base64, lock, shard_for, shard_id, RecordError, Shared, StallMode, StubRecord,
    MAX_RECORDS_PER_REQUEST, MAX_RECORD_BYTES, MAX_REQUEST_BYTES,
};

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

/// What the fault script decided for one PutRecords call before any record is stored.
enum Verdict {
    Throttle,
    ServerError(u16),
    Proceed { stall: Option<(Instant, StallMode)> },
}

pub(super) async fn put_records(shared: &Shared, body: &[u8]) -> Reply {
    let input: PutRecordsInput = match serde_json::from_slice(body) {
        Ok(i) => i,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "SerializationException",
                &e.to_string(),
            )
        }
    };
    let name = input.stream.name();
    let mut entries = Vec::with_capacity(input.records.len());
    let mut request_bytes = 0usize;
    for (i, entry) in input.records.iter().enumerate() {
        let Some(data) = base64::decode(&entry.data) else {
            return invalid(shared, &format!("Records[{i}].Data is not valid base64"));
        };
        let size = data.len() + entry.partition_key.len();
        if entry.partition_key.is_empty() || entry.partition_key.chars().count() > 256 {
            return invalid(
                shared,
                &format!("Records[{i}].PartitionKey must be 1 to 256 characters"),
            );
        }
        if size > MAX_RECORD_BYTES {
            return invalid(
                shared,
                &format!("Records[{i}] is {size} bytes, above the 1 MiB record limit"),
            );
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
            return invalid(
                shared,
                &format!("PutRecords carries {n} records; Kinesis takes 1 to 500"),
            );
        }
        if request_bytes > MAX_REQUEST_BYTES {
            drop(state);
            return invalid(
                shared,
                &format!("PutRecords is {request_bytes} bytes, above the 5 MiB limit"),
            );
        }
        let stall = state
            .faults
            .stall
            .filter(|(until, _)| *until > Instant::now());
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
            let kind = if status == StatusCode::SERVICE_UNAVAILABLE {
                "ServiceUnavailable"
            } else {
                "InternalFailure"
            };
            return error(status, kind, "scripted server error");
        }
        Verdict::Proceed { stall } => stall,
    };
    match stall {
        Some((until, StallMode::Unavailable)) => {
            tokio::time::sleep_until(until.into()).await;
            lock(shared).stats.server_errors += 1;
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "scripted stall",
            );
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
                    (
                        "ProvisionedThroughputExceededException",
                        format!("Rate exceeded for stream {name}."),
                    )
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
            let shard = shard_id(shard_for(
                stream.shards,
                &entry.partition_key,
                entry.explicit_hash_key.as_deref(),
            ));
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
