//! Logging set-up, one-line AWS error messages, and (in `console`) the lines the
//! original tool printed.
//!
//! Owns the log format (`text` for people, `json` for CloudWatch, `console` for the
//! original tool's progress lines, in `telemetry/console.rs`). It never decides anything about
//! delivery.

use std::time::Duration;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

mod console;
pub use console::{Console, CONSOLE_TARGET};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line per event with time, level and fields, for people.
    #[default]
    Text,
    /// One JSON object per line, for CloudWatch.
    Json,
    /// The original Python tool's lines, exactly: the progress lines on stdout, and
    /// warnings and errors as plain lines on stderr; nothing else.
    Console,
}

/// Install the global subscriber. `RUST_LOG` overrides the default `info` level.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Console => {
            let filter = tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
            tracing_subscriber::registry()
                .with(filter)
                .with(console::ConsoleLayer {
                    out: std::io::stdout,
                    err: std::io::stderr,
                })
                .try_init()
                .map_err(Into::into)
        }
    };
}

/// A duration as a log field reads it, in seconds: `retry_in=0.63s`.
pub fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

/// An error followed by each of its sources (`a: b: c`), so that a log line carries
/// the cause an operator can act on ("connection refused"), not just the summary.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

/// Longest cause text kept in a one-line AWS error.
const MAX_CAUSE_CHARS: usize = 200;

/// One line for a failed AWS call: the service, the operation, what happened (the
/// error code and message, or the innermost cause of a transport failure) and what to
/// check. The SDK's own `Debug` output is kilobytes long; the whole chain goes to the
/// debug log (`RUST_LOG=debug`) instead. `check` says what to check when the service
/// answered with an error; transport and set-up failures say it themselves.
///
/// Every SDK crate re-exports the same smithy `SdkError` and `ProvideErrorMetadata`,
/// so this serves Kinesis, SSM, Secrets Manager and CloudWatch alike.
pub fn aws_error<E>(
    service: &str,
    operation: &str,
    err: &aws_sdk_kinesis::error::SdkError<E, aws_sdk_kinesis::config::http::HttpResponse>,
    check: &str,
) -> String
where
    E: aws_sdk_kinesis::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    use aws_sdk_kinesis::error::SdkError;
    tracing::debug!(
        service,
        operation,
        "{service} {operation} failed: {}",
        aws_sdk_kinesis::error::DisplayErrorContext(err)
    );
    let what = match err {
        SdkError::ServiceError(e) => {
            let status = e.raw().status().as_u16();
            let inner = e.err();
            let code = inner.code().unwrap_or("an error without a code");
            let message = inner.message().map(one_line).unwrap_or_default();
            let message = if message.is_empty() {
                String::new()
            } else {
                format!(": {message}")
            };
            return format!(
                "{service} {operation} failed with {code}{message} (HTTP {status}); check {check}"
            );
        }
        SdkError::TimeoutError(_) => "timed out".to_string(),
        SdkError::DispatchFailure(_) => format!("could not send the request: {}", innermost(err)),
        SdkError::ResponseError(_) => format!("the response could not be read: {}", innermost(err)),
        SdkError::ConstructionFailure(_) => {
            format!("the request could not be built: {}", innermost(err))
        }
        _ => innermost(err),
    };
    let hint = match err {
        SdkError::ConstructionFailure(_) => {
            "check the AWS region (the slot's region, or AWS_REGION) and the credentials settings"
        }
        _ => "check that the endpoint is reachable from here (network, security groups, VPC endpoint or NAT, AWS_ENDPOINT_URL)",
    };
    format!("{service} {operation} failed: {what}; {hint}")
}

/// The deepest cause of `err`, on one line and at most [`MAX_CAUSE_CHARS`] long
/// ("Connection refused (os error 111)" rather than "dispatch failure").
pub fn innermost(err: &(dyn std::error::Error + 'static)) -> String {
    let mut deepest = err;
    while let Some(next) = deepest.source() {
        deepest = next;
    }
    let text = one_line(&deepest.to_string());
    if text.chars().count() > MAX_CAUSE_CHARS {
        format!(
            "{}...",
            text.chars().take(MAX_CAUSE_CHARS).collect::<String>()
        )
    } else {
        text
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot connect")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn error_chain_names_the_cause() {
        let err = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(error_chain(&err), "cannot connect: connection refused");
    }

    #[test]
    fn aws_errors_are_one_line_with_service_operation_code_and_what_to_check() {
        use aws_sdk_kinesis::config::http::HttpResponse;
        use aws_sdk_kinesis::error::{ConnectorError, ErrorMetadata, SdkError};
        use aws_sdk_kinesis::operation::put_records::PutRecordsError;

        let refused = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        ));
        let dispatch: SdkError<PutRecordsError, HttpResponse> =
            SdkError::dispatch_failure(ConnectorError::io(Box::new(refused)));
        let text = aws_error("Kinesis", "PutRecords", &dispatch, "the stream");
        assert_eq!(
            text,
            "Kinesis PutRecords failed: could not send the request: Connection refused (os error 111); check that the endpoint is reachable from here (network, security groups, VPC endpoint or NAT, AWS_ENDPOINT_URL)"
        );

        let denied = PutRecordsError::generic(
            ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("User: arn:aws:sts::1:assumed-role/x is not authorized\nto perform kinesis:PutRecords")
                .build(),
        );
        let raw = HttpResponse::new(400u16.try_into().unwrap(), "".into());
        let service: SdkError<PutRecordsError, HttpResponse> = SdkError::service_error(denied, raw);
        let text = aws_error(
            "Kinesis",
            "PutRecords",
            &service,
            "the task role's kinesis:PutRecords permission",
        );
        assert_eq!(
            text,
            "Kinesis PutRecords failed with AccessDeniedException: User: arn:aws:sts::1:assumed-role/x is not authorized to perform kinesis:PutRecords (HTTP 400); check the task role's kinesis:PutRecords permission"
        );

        let long = "x".repeat(5000);
        let built: SdkError<PutRecordsError, HttpResponse> = SdkError::construction_failure(long);
        let text = aws_error("Kinesis", "PutRecords", &built, "-");
        assert!(text.len() < 500 && !text.contains('\n'), "{text}");
        assert!(text.contains("region"), "{text}");
    }

    #[test]
    fn durations_read_as_seconds() {
        assert_eq!(secs(Duration::from_millis(630)), "0.63s");
        assert_eq!(secs(Duration::from_secs(300)), "300.00s");
    }
}
