//! One `PutRecords` call and what its answer means for each record.
//!
//! Owns the classification of Kinesis answers: accepted, retry (throttling,
//! internal failures, 5xx, timeouts, connection errors) or stop the slot
//! (stream not found, access denied, invalid request, KMS key unusable). It never
//! decides *when* to retry; the sink loop does.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;

use super::schedule::Entry;

/// What happened to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Per entry, in request order: `None` accepted, `Some(code)` failed and retryable.
    Partial {
        failures: Vec<Option<String>>,
        throttled: usize,
    },
    /// Nothing was accepted; retry all of it. `throttled` says whether Kinesis asked us to slow down.
    RetryAll { reason: String, throttled: bool },
    /// The slot cannot continue.
    Permanent { reason: String },
}

/// Per-record error codes that mean "try again later".
fn retryable_record_code(code: &str) -> bool {
    matches!(
        code,
        "ProvisionedThroughputExceededException" | "InternalFailure" | "KMSThrottlingException"
    )
}

pub fn entries(batch: &[Entry]) -> Vec<PutRecordsRequestEntry> {
    batch
        .iter()
        .map(|e| {
            // The builder only fails when a required field is missing; both are set.
            PutRecordsRequestEntry::builder()
                .data(Blob::new(e.record.data.clone()))
                .partition_key(e.record.partition_key.clone())
                .build()
                .unwrap_or_else(|_| unreachable_entry())
        })
        .collect()
}

#[cold]
fn unreachable_entry() -> PutRecordsRequestEntry {
    // Never reached: data and partition_key are always set above. Kept total so
    // this path cannot panic.
    PutRecordsRequestEntry::builder()
        .data(Blob::new(Vec::new()))
        .partition_key("")
        .build()
        .unwrap_or_else(|_| unreachable_entry())
}

/// Interpret the answer to a request of `sent` records.
pub fn classify(
    sent: usize,
    result: Result<PutRecordsOutput, SdkError<PutRecordsError, HttpResponse>>,
) -> Outcome {
    match result {
        Ok(out) => classify_output(sent, &out),
        Err(SdkError::ServiceError(err)) => {
            let status = err.raw().status().as_u16();
            classify_service_error(err.into_err(), status)
        }
        Err(SdkError::ConstructionFailure(e)) => Outcome::Permanent {
            reason: format!("the PutRecords request could not be built: {e:?}"),
        },
        Err(SdkError::TimeoutError(_)) => Outcome::RetryAll {
            reason: "PutRecords timed out".into(),
            throttled: false,
        },
        Err(SdkError::DispatchFailure(e)) => Outcome::RetryAll {
            reason: format!("could not reach Kinesis: {e:?}"),
            throttled: false,
        },
        Err(SdkError::ResponseError(_)) => Outcome::RetryAll {
            reason: "Kinesis sent an unreadable response".into(),
            throttled: false,
        },
        Err(other) => Outcome::RetryAll {
            reason: format!("PutRecords failed: {other}"),
            throttled: false,
        },
    }
}

fn classify_output(sent: usize, out: &PutRecordsOutput) -> Outcome {
    let records = out.records();
    if out.failed_record_count().unwrap_or(0) == 0
        && records.iter().all(|r| r.error_code().is_none())
    {
        return Outcome::Partial {
            failures: vec![None; sent],
            throttled: 0,
        };
    }
    if records.len() != sent {
        // Without a one-to-one answer we cannot tell which records failed: resend all.
        return Outcome::RetryAll {
            reason: format!(
                "Kinesis answered {} results for {sent} records",
                records.len()
            ),
            throttled: false,
        };
    }
    let mut throttled = 0;
    let mut failures = Vec::with_capacity(sent);
    for r in records {
        match r.error_code() {
            None => failures.push(None),
            Some(code) if retryable_record_code(code) => {
                if code != "InternalFailure" {
                    throttled += 1;
                }
                failures.push(Some(code.to_string()));
            }
            Some(code) => {
                return Outcome::Permanent {
                    reason: format!(
                        "Kinesis rejected a record with {code}: {}",
                        r.error_message().unwrap_or("")
                    ),
                };
            }
        }
    }
    Outcome::Partial {
        failures,
        throttled,
    }
}

fn classify_service_error(err: PutRecordsError, status: u16) -> Outcome {
    let code = err.code().unwrap_or("Unknown").to_string();
    let message = err.message().unwrap_or("").to_string();
    match err {
        PutRecordsError::ProvisionedThroughputExceededException(_) | PutRecordsError::KmsThrottlingException(_) => {
            Outcome::RetryAll { reason: format!("{code}: {message}"), throttled: true }
        }
        PutRecordsError::InternalFailureException(_) => {
            Outcome::RetryAll { reason: format!("{code}: {message}"), throttled: false }
        }
        PutRecordsError::ResourceNotFoundException(_) => Outcome::Permanent {
            reason: format!("the stream does not exist ({message}): create it, or fix kns_stream/region in the config"),
        },
        PutRecordsError::AccessDeniedException(_) | PutRecordsError::KmsAccessDeniedException(_) => Outcome::Permanent {
            reason: format!(
                "access denied ({code}: {message}): grant kinesis:PutRecords on the stream (and kms:GenerateDataKey on its key)"
            ),
        },
        PutRecordsError::InvalidArgumentException(_) => {
            Outcome::Permanent { reason: format!("Kinesis rejected the request as invalid: {message}") }
        }
        PutRecordsError::KmsDisabledException(_)
        | PutRecordsError::KmsInvalidStateException(_)
        | PutRecordsError::KmsNotFoundException(_)
        | PutRecordsError::KmsOptInRequired(_) => Outcome::Permanent {
            reason: format!("the stream's KMS key cannot be used ({code}: {message}): fix the key or the stream's encryption"),
        },
        _ if status >= 500 || code.contains("Throttl") || code == "LimitExceededException" => Outcome::RetryAll {
            reason: format!("{code} (HTTP {status}): {message}"),
            throttled: status == 429 || code.contains("Throttl") || code == "LimitExceededException",
        },
        _ => Outcome::Permanent { reason: format!("Kinesis refused PutRecords with {code} (HTTP {status}): {message}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_kinesis::types::error::{
        ProvisionedThroughputExceededException, ResourceNotFoundException,
    };
    use aws_sdk_kinesis::types::PutRecordsResultEntry;

    fn ok_entry() -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .sequence_number("1")
            .shard_id("shardId-0")
            .build()
    }

    fn failed_entry(code: &str) -> PutRecordsResultEntry {
        PutRecordsResultEntry::builder()
            .error_code(code)
            .error_message("slow down")
            .build()
    }

    fn output(entries: Vec<PutRecordsResultEntry>) -> PutRecordsOutput {
        let failed = entries.iter().filter(|e| e.error_code().is_some()).count() as i32;
        PutRecordsOutput::builder()
            .failed_record_count(failed)
            .set_records(Some(entries))
            .build()
            .unwrap()
    }

    #[test]
    fn all_accepted() {
        let out = output(vec![ok_entry(), ok_entry()]);
        assert_eq!(
            classify_output(2, &out),
            Outcome::Partial {
                failures: vec![None, None],
                throttled: 0
            }
        );
    }

    #[test]
    fn partial_failure_names_only_the_failed_entries() {
        let out = output(vec![
            ok_entry(),
            failed_entry("ProvisionedThroughputExceededException"),
            ok_entry(),
            failed_entry("InternalFailure"),
        ]);
        assert_eq!(
            classify_output(4, &out),
            Outcome::Partial {
                failures: vec![
                    None,
                    Some("ProvisionedThroughputExceededException".into()),
                    None,
                    Some("InternalFailure".into())
                ],
                throttled: 1
            }
        );
    }

    #[test]
    fn mismatched_answer_resends_everything() {
        let out = output(vec![failed_entry("InternalFailure")]);
        assert!(matches!(classify_output(3, &out), Outcome::RetryAll { .. }));
    }

    #[test]
    fn unknown_record_error_stops_the_slot() {
        let out = output(vec![failed_entry("KMSAccessDeniedException")]);
        assert!(matches!(
            classify_output(1, &out),
            Outcome::Permanent { .. }
        ));
    }

    #[test]
    fn service_errors_classify() {
        let throttle = PutRecordsError::ProvisionedThroughputExceededException(
            ProvisionedThroughputExceededException::builder()
                .message("rate")
                .build(),
        );
        assert!(matches!(
            classify_service_error(throttle, 400),
            Outcome::RetryAll {
                throttled: true,
                ..
            }
        ));
        let missing = PutRecordsError::ResourceNotFoundException(
            ResourceNotFoundException::builder().message("nope").build(),
        );
        match classify_service_error(missing, 400) {
            Outcome::Permanent { reason } => assert!(reason.contains("does not exist"), "{reason}"),
            other => panic!("{other:?}"),
        }
        let unhandled = PutRecordsError::generic(
            aws_sdk_kinesis::error::ErrorMetadata::builder()
                .code("ServiceUnavailable")
                .message("busy")
                .build(),
        );
        assert!(matches!(
            classify_service_error(unhandled, 503),
            Outcome::RetryAll {
                throttled: false,
                ..
            }
        ));
        let bad = PutRecordsError::generic(
            aws_sdk_kinesis::error::ErrorMetadata::builder()
                .code("Weird")
                .message("no")
                .build(),
        );
        assert!(matches!(
            classify_service_error(bad, 400),
            Outcome::Permanent { .. }
        ));
    }
}
