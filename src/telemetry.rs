//! Logging set-up and the console lines the original tool printed.
//!
//! Owns the log format (`text` for people, `json` for CloudWatch) and the
//! rate-limited progress lines `[slot] Waiting records to process. (Queue length: N)`
//! and `[slot] Sending changes to Kinesis: i of n chunks. (Queue length: N)`. It
//! never decides anything about delivery.

use std::time::{Duration, Instant};

/// At most one progress line of each kind per slot per interval, so the console
/// stays readable at 100k rows/s.
const CONSOLE_INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
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
    };
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

/// The original tool's progress lines for one slot.
#[derive(Debug)]
pub struct Console {
    slot: String,
    busy: bool,
    chunk: u64,
    last_sending: Option<Instant>,
    last_waiting: Option<Instant>,
}

impl Console {
    pub fn new(slot: &str) -> Self {
        Console {
            slot: slot.to_string(),
            busy: true,
            chunk: 0,
            last_sending: None,
            last_waiting: None,
        }
    }

    /// A request of `batch` records is going out; `queue` records wait behind it.
    pub fn sending(&mut self, queue: usize, batch: usize, max_records: usize) {
        if !self.busy {
            self.busy = true;
            self.chunk = 0;
            self.last_sending = None;
        }
        self.chunk += 1;
        let _ = batch;
        let total = self.chunk + queue.div_ceil(max_records.max(1)) as u64;
        if due(&mut self.last_sending) {
            tracing::info!(
                slot = %self.slot,
                "[{}] Sending changes to Kinesis: {} of {} chunks. (Queue length: {})",
                self.slot,
                self.chunk,
                total,
                queue
            );
        }
    }

    /// Everything handed over so far is delivered.
    pub fn waiting(&mut self, queue: usize) {
        if self.busy && due(&mut self.last_waiting) {
            self.busy = false;
            tracing::info!(slot = %self.slot, "[{}] Waiting records to process. (Queue length: {})", self.slot, queue);
        }
    }
}

fn due(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < CONSOLE_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
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
    fn console_lines_are_rate_limited() {
        let mut last = None;
        assert!(due(&mut last));
        assert!(
            !due(&mut last),
            "a second line within the interval is suppressed"
        );
    }
}
