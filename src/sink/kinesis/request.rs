//! One `PutRecords` call and what its answer means for each record.
//!
//! Owns the classification of Kinesis answers: accepted, retry (throttling,
//! internal failures, 5xx, timeouts, connection errors) or stop the slot
//! (stream not found, access denied, invalid request, KMS key unusable). It never
//! decides *when* to retry; the sink loop does.

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::put_records::{PutRecordsError, PutRecordsOutput};
use compact_str::CompactString;

/// What happened to one record of a request.
#[derive(Debug, PartialEq, Eq)]
pub enum RecordResult {
    /// Stored, on this shard (when Kinesis said). Shard ids (`shardId-000000000000`)
    /// fit a `CompactString` inline: no allocation per record.
    Accepted { shard_id: Option<CompactString> },
    /// `ProvisionedThroughputExceededException` or `KMSThrottlingException`: its shard
    /// (or key) is over its limit.
    Throttled,
    /// `InternalFailure`: retry later.
    Failed,
}
use crate::telemetry::aws_error;

/// What to check when a `PutRecords` call fails as a whole.
const PUT_CHECK: &str =
    "the stream name and region, and that the task role may call kinesis:PutRecords on the stream";

/// What happened to one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// One result per record, in request order.
    Partial { results: Vec<RecordResult> },
    /// Nothing was accepted; retry all of it. `throttled` says whether Kinesis asked us to slow down.
    RetryAll { reason: String, throttled: bool },
    /// The slot cannot continue.
    Permanent { reason: String },
}

/// Interpret the answer to a request of `sent` records. `read` is what
/// `answer::Answer` read from a successful answer, if it read one.
pub fn classify(
    sent: usize,
    result: Result<PutRecordsOutput, SdkError<PutRecordsError, HttpResponse>>,
    read: Option<Outcome>,
) -> Outcome {
    match result {
        Ok(out) => read.unwrap_or_else(|| classify_output(sent, &out)),
        Err(SdkError::ServiceError(err)) => {
            let status = err.raw().status().as_u16();
            classify_service_error(err.into_err(), status)
        }
        Err(e @ SdkError::ConstructionFailure(_)) => Outcome::Permanent {
            reason: aws_error("Kinesis", "PutRecords", &e, PUT_CHECK),
        },
        Err(SdkError::TimeoutError(_)) => Outcome::RetryAll {
            reason: "PutRecords timed out".into(),
            throttled: false,
        },
        Err(e @ SdkError::DispatchFailure(_)) => Outcome::RetryAll {
            reason: aws_error("Kinesis", "PutRecords", &e, PUT_CHECK),
            throttled: false,
        },
        Err(SdkError::ResponseError(_)) => Outcome::RetryAll {
            reason: "Kinesis sent an unreadable response".into(),
            throttled: false,
        },
        Err(other) => Outcome::RetryAll {
            reason: aws_error("Kinesis", "PutRecords", &other, PUT_CHECK),
            throttled: false,
        },
    }
}

fn classify_output(sent: usize, out: &PutRecordsOutput) -> Outcome {
    classify_records(
        sent,
        out.records().iter().map(|r| Answered {
            shard_id: r.shard_id(),
            error_code: r.error_code(),
            error_message: r.error_message(),
        }),
    )
}

/// One record's entry in a `PutRecords` answer, as read by the SDK or by `answer`.
pub struct Answered<'a> {
    pub(super) shard_id: Option<&'a str>,
    pub(super) error_code: Option<&'a str>,
    pub(super) error_message: Option<&'a str>,
}

/// Interpret the entries of a successful answer to a request of `sent` records.
pub fn classify_records<'a>(
    sent: usize,
    records: impl ExactSizeIterator<Item = Answered<'a>>,
) -> Outcome {
    if records.len() != sent {
        // Without a one-to-one answer we cannot tell which records were stored, even
        // when FailedRecordCount says 0: resend all.
        return Outcome::RetryAll {
            reason: format!(
                "Kinesis answered {} results for {sent} records",
                records.len()
            ),
            throttled: false,
        };
    }
    let mut results = Vec::with_capacity(sent);
    for r in records {
        match r.error_code {
            None => results.push(RecordResult::Accepted {
                shard_id: r.shard_id.map(CompactString::from),
            }),
            Some("ProvisionedThroughputExceededException" | "KMSThrottlingException") => {
                results.push(RecordResult::Throttled)
            }
            Some("InternalFailure") => results.push(RecordResult::Failed),
            Some(code) => {
                return Outcome::Permanent {
                    reason: format!(
                        "Kinesis rejected a record with {code}: {}",
                        r.error_message.unwrap_or("")
                    ),
                };
            }
        }
    }
    Outcome::Partial { results }
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
        let accepted = || RecordResult::Accepted {
            shard_id: Some("shardId-0".into()),
        };
        assert_eq!(
            classify_output(2, &out),
            Outcome::Partial {
                results: vec![accepted(), accepted()]
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
        let accepted = || RecordResult::Accepted {
            shard_id: Some("shardId-0".into()),
        };
        assert_eq!(
            classify_output(4, &out),
            Outcome::Partial {
                results: vec![
                    accepted(),
                    RecordResult::Throttled,
                    accepted(),
                    RecordResult::Failed
                ]
            }
        );
    }

    #[test]
    fn mismatched_answer_resends_everything() {
        let out = output(vec![failed_entry("InternalFailure")]);
        assert!(matches!(classify_output(3, &out), Outcome::RetryAll { .. }));
    }

    #[test]
    fn a_short_answer_without_failures_is_not_an_acceptance() {
        // FailedRecordCount 0, but two results for three records: which one is missing?
        let out = output(vec![ok_entry(), ok_entry()]);
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
