//! PutRecords, the one operation the fault script and the model apply to (in JSON or
//! CBOR, read into the same records): validation
//! against the Kinesis limits, the model's latency, whole-request faults (throttle,
//! 5xx, stall), then per-record failures (scripted, then the shard's limits and
//! throttles), storing exactly the records answered as accepted.
//!
//! Must never hold the state lock across an await: a stall would block every request.

use std::time::{Instant, SystemTime};

use hyper::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::cbor::{self, Put};
use super::shards::hash_key;
use super::wire::{error, not_found, ok, Reply, StreamRef, ACCOUNT};
use super::{
    base64, lock, RecordError, Shared, StallMode, StubRecord, MAX_RECORDS_PER_REQUEST,
    MAX_RECORD_BYTES, MAX_REQUEST_BYTES,
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

/// Why a request is refused before any record is looked at.
enum Refused {
    /// Not a document of the protocol: `SerializationException`.
    Unreadable(String),
    /// A document, but not a valid request: `ValidationException`.
    Invalid(String),
}

/// The stream named and the records of a request in JSON, each record's data
/// decoded from base64.
fn from_json(body: &[u8]) -> Result<(String, Vec<Put>), Refused> {
    let input: PutRecordsInput =
        serde_json::from_slice(body).map_err(|e| Refused::Unreadable(e.to_string()))?;
    let mut puts = Vec::with_capacity(input.records.len());
    for (i, entry) in input.records.into_iter().enumerate() {
        let Some(data) = base64::decode(&entry.data) else {
            return Err(Refused::Invalid(format!(
                "Records[{i}].Data is not valid base64"
            )));
        };
        puts.push(Put {
            data,
            partition_key: entry.partition_key,
            explicit_hash_key: entry.explicit_hash_key,
        });
    }
    Ok((input.stream.name(), puts))
}

/// PutRecords in JSON, or in CBOR when `cbor` (answered in JSON here either way:
/// `wire` writes the answer to a CBOR request again in CBOR).
pub(super) async fn put_records(shared: &Shared, body: &[u8], cbor: bool) -> Reply {
    let parsed = if cbor {
        cbor::put_records(body)
            .map(|(name, arn, puts)| (StreamRef::named(name, arn).name(), puts))
            .map_err(Refused::Unreadable)
    } else {
        from_json(body)
    };
    let (name, puts) = match parsed {
        Ok(parsed) => parsed,
        Err(Refused::Unreadable(why)) => {
            return error(StatusCode::BAD_REQUEST, "SerializationException", &why)
        }
        Err(Refused::Invalid(why)) => return invalid(shared, &why),
    };
    let mut request_bytes = 0usize;
    for (i, entry) in puts.iter().enumerate() {
        let size = entry.data.len() + entry.partition_key.len();
        if entry.partition_key.is_empty() || entry.partition_key.chars().count() > 256 {
            return invalid(
                shared,
                &format!("Records[{i}].PartitionKey must be 1 to 256 characters"),
            );
        }
        if hash_key(&entry.partition_key, entry.explicit_hash_key.as_deref()).is_none() {
            return invalid(
                shared,
                &format!("Records[{i}].ExplicitHashKey is not a decimal 128-bit number"),
            );
        }
        if size > MAX_RECORD_BYTES {
            return invalid(
                shared,
                &format!("Records[{i}] is {size} bytes, above the 1 MiB record limit"),
            );
        }
        request_bytes += size;
    }

    let latency = lock(shared).model.latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let verdict = {
        let mut state = lock(shared);
        state.stats.put_records_requests += 1;
        state.stats.records_per_request.push(puts.len());
        state.auto_create(&name);
        if let Some(s) = state.streams.get_mut(&name) {
            s.ledger.stats.put_records_requests += 1;
        }
        if !state.streams.contains_key(&name) {
            state.stats.not_found += 1;
            return not_found(&name);
        }
        if puts.is_empty() || puts.len() > MAX_RECORDS_PER_REQUEST {
            drop(state);
            let n = puts.len();
            return invalid(
                shared,
                &format!("PutRecords carries {n} records; Kinesis takes 1 to 500"),
            );
        }
        if request_bytes > MAX_REQUEST_BYTES {
            drop(state);
            return invalid(
                shared,
                &format!("PutRecords is {request_bytes} bytes, above the 10 MiB limit"),
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
        let mut guard = lock(shared);
        let state = &mut *guard;
        let rate = state.faults.record_failure_rate;
        let kind = state.faults.record_error;
        let limits = state.model.limits;
        let keep = state.model.keep_records;
        let sample_latency = state
            .model
            .latency_prefix
            .as_deref()
            .is_some_and(|p| name.starts_with(p));
        let now = Instant::now();
        let wall = SystemTime::now();
        let mut results = Vec::with_capacity(puts.len());
        let (mut failed, mut throttled, mut users, mut aggregates) = (0usize, 0u64, 0u64, 0u64);
        let (before_violations, before_duplicates) = match state.streams.get(&name) {
            Some(s) => (s.ledger.stats.order_violations, s.ledger.stats.duplicates),
            None => (0, 0),
        };
        for Put {
            data,
            partition_key,
            explicit_hash_key,
        } in puts
        {
            if state.rng.chance(rate) {
                let throughput = match kind {
                    RecordError::Throughput => true,
                    RecordError::Internal => false,
                    RecordError::Mixed => state.rng.chance(0.5),
                };
                failed += 1;
                results.push(if throughput {
                    PutResult::throttled(&name)
                } else {
                    PutResult::failed("InternalFailure", "Internal service failure.".to_string())
                });
                continue;
            }
            let Some(stream) = state.streams.get_mut(&name) else {
                // Deleted while stalled.
                return not_found(&name);
            };
            let hash = hash_key(&partition_key, explicit_hash_key.as_deref()).unwrap_or_default();
            let index = stream.shards.route(hash);
            let others_throttled = stream
                .shards
                .all
                .iter()
                .enumerate()
                .any(|(i, s)| i != index && s.forced_throttle_active(now));
            let bytes = (data.len() + partition_key.len()) as u64;
            let shard = &mut stream.shards.all[index];
            if shard.admit(now, bytes, limits).is_err() {
                failed += 1;
                throttled += 1;
                stream.ledger.stats.throttled_records += 1;
                results.push(PutResult::throttled(&name));
                continue;
            }
            if others_throttled {
                shard.stats.accepted_during_other_throttle += 1;
            }
            let shard_id = shard.id().to_string();
            let before_aggregates = stream.ledger.stats.aggregated_records;
            let n = stream
                .ledger
                .accept(&partition_key, &data, wall, sample_latency);
            aggregates += stream.ledger.stats.aggregated_records - before_aggregates;
            users += n;
            stream.shards.all[index].stats.accepted_user_records += n;
            let sequence_number = format!("{:056}", stream.next_sequence);
            stream.next_sequence += 1;
            if keep {
                stream.records.push(StubRecord {
                    partition_key,
                    data,
                    shard_id: shard_id.clone(),
                    sequence_number: sequence_number.clone(),
                    arrived: now,
                });
            }
            results.push(PutResult {
                sequence_number: Some(sequence_number),
                shard_id: Some(shard_id),
                error_code: None,
                error_message: None,
            });
        }
        let (violations, duplicates) = match state.streams.get(&name) {
            Some(s) => (s.ledger.stats.order_violations, s.ledger.stats.duplicates),
            None => (before_violations, before_duplicates),
        };
        let stats = &mut state.stats;
        stats.failed_records += failed as u64;
        stats.accepted_records += (results.len() - failed) as u64;
        stats.throttled_records += throttled;
        stats.user_records += users;
        stats.aggregated_records += aggregates;
        stats.order_violations += violations - before_violations;
        stats.duplicates += duplicates - before_duplicates;
        (results, failed)
    };
    if let Some((until, StallMode::LostResponse)) = stall {
        tokio::time::sleep_until(until.into()).await;
    }
    ok(&json!({ "FailedRecordCount": failed, "Records": results, "EncryptionType": "NONE" }))
}

impl PutResult {
    fn failed(code: &'static str, message: String) -> PutResult {
        PutResult {
            sequence_number: None,
            shard_id: None,
            error_code: Some(code),
            error_message: Some(message),
        }
    }

    fn throttled(stream: &str) -> PutResult {
        PutResult::failed(
            "ProvisionedThroughputExceededException",
            format!("Rate exceeded for shard in stream {stream} under account {ACCOUNT}."),
        )
    }
}

fn invalid(shared: &Shared, message: &str) -> Reply {
    lock(shared).stats.invalid_requests += 1;
    error(StatusCode::BAD_REQUEST, "ValidationException", message)
}
