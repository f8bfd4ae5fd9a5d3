//! The original tool's console: its two progress lines per slot, and `--log-format
//! console`, which prints those lines exactly as the tool did (on stdout, with no
//! timestamp, level or fields) and every warning and error as one plain line on stderr.
//!
//! Owns the wording of the progress lines and what a burst is. It never decides
//! anything about delivery: the sink tells it what it sent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The target of the progress lines: what `--log-format console` prints on stdout.
pub const CONSOLE_TARGET: &str = "pg_cdc_to_kinesis::console";

/// At most one progress line of each kind per slot per interval, so the console
/// stays readable at 100k rows/s.
const CONSOLE_INTERVAL: Duration = Duration::from_secs(1);

/// The original tool's progress lines for one slot.
///
/// A *burst* starts when a request goes out and none is under way in this burst: its
/// `n` is the number of chunks (requests of up to `batch_max_records` changes) the
/// changes waiting at that moment fill, and it never changes. `i` counts the requests
/// sent in the burst. The burst ends when everything handed over is delivered (the
/// "Waiting" line), when its `n` requests went out, or when the changes it counted
/// are all sent; changes read meanwhile belong to the next burst.
#[derive(Debug)]
pub struct Console {
    slot: String,
    burst: Option<Burst>,
    /// The "Waiting" line was printed since the last burst.
    idle_shown: bool,
    last_sending: Option<Instant>,
    last_waiting: Option<Instant>,
}

#[derive(Debug, Clone, Copy)]
struct Burst {
    /// Requests sent in this burst (`i`).
    sent: u64,
    /// Chunks the burst's changes fill (`n`).
    chunks: u64,
    /// Changes of the burst not sent yet.
    remaining: usize,
}

impl Console {
    pub fn new(slot: &str) -> Self {
        Console {
            slot: slot.to_string(),
            burst: None,
            idle_shown: false,
            last_sending: None,
            last_waiting: None,
        }
    }

    /// A request of `batch` changes is going out; `queue` changes wait behind it.
    pub fn sending(&mut self, queue: usize, batch: usize, max_records: usize) {
        if let Some(line) = self.sending_line(Instant::now(), queue, batch, max_records) {
            tracing::info!(target: CONSOLE_TARGET, slot = %self.slot, "{line}");
        }
    }

    /// Everything handed over so far is delivered; `queue` changes are being read.
    pub fn waiting(&mut self, queue: usize) {
        if let Some(line) = self.waiting_line(Instant::now(), queue) {
            tracing::info!(target: CONSOLE_TARGET, slot = %self.slot, "{line}");
        }
    }

    fn sending_line(
        &mut self,
        now: Instant,
        queue: usize,
        batch: usize,
        max_records: usize,
    ) -> Option<String> {
        let burst = match self.burst {
            Some(b) if b.sent < b.chunks && b.remaining > 0 => b,
            _ => {
                let backlog = queue + batch;
                Burst {
                    sent: 0,
                    chunks: (backlog.div_ceil(max_records.max(1)) as u64).max(1),
                    remaining: backlog,
                }
            }
        };
        let burst = Burst {
            sent: burst.sent + 1,
            remaining: burst.remaining.saturating_sub(batch),
            ..burst
        };
        self.burst = Some(burst);
        self.idle_shown = false;
        due(&mut self.last_sending, now).then(|| {
            format!(
                "[{}] Sending changes to Kinesis: {} of {} chunks. (Queue length: {queue})",
                self.slot, burst.sent, burst.chunks
            )
        })
    }

    fn waiting_line(&mut self, now: Instant, queue: usize) -> Option<String> {
        self.burst = None;
        if self.idle_shown || !due(&mut self.last_waiting, now) {
            return None;
        }
        self.idle_shown = true;
        Some(format!(
            "[{}] Waiting records to process. (Queue length: {queue})",
            self.slot
        ))
    }
}

fn due(last: &mut Option<Instant>, now: Instant) -> bool {
    if last.is_some_and(|t| now.duration_since(t) < CONSOLE_INTERVAL) {
        return false;
    }
    *last = Some(now);
    true
}

/// `--log-format console`: progress lines as they are to `out`, warnings and errors as
/// `[slot] warning: message (field=value, ...)` to `err`, everything else not at all.
pub struct ConsoleLayer<O, E> {
    pub out: O,
    pub err: E,
}

impl<S, O, E> Layer<S> for ConsoleLayer<O, E>
where
    S: Subscriber,
    O: for<'w> MakeWriter<'w> + 'static,
    E: for<'w> MakeWriter<'w> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let level = *meta.level();
        let mut fields = Fields::default();
        if meta.target() == CONSOLE_TARGET && level == Level::INFO {
            event.record(&mut fields);
            let _ = self
                .out
                .make_writer()
                .write_all(format!("{}\n", fields.message).as_bytes());
        } else if level == Level::WARN || level == Level::ERROR {
            event.record(&mut fields);
            let word = if level == Level::ERROR {
                "error"
            } else {
                "warning"
            };
            let _ = self
                .err
                .make_writer()
                .write_all(plain_line(word, fields).as_bytes());
        }
    }
}

/// One line whatever the message holds: `[slot] warning: message (k=v, k=v)`.
fn plain_line(word: &str, fields: Fields) -> String {
    let mut message = fields
        .message
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut line = String::new();
    if let Some(slot) = &fields.slot {
        let prefix = format!("[{slot}] ");
        if let Some(rest) = message.strip_prefix(&prefix) {
            message = rest.to_string();
        }
        line.push_str(&prefix);
    }
    let _ = write!(line, "{word}: {message}");
    if !fields.rest.is_empty() {
        let _ = write!(line, " ({})", fields.rest.join(", "));
    }
    line.push('\n');
    line
}

#[derive(Default)]
struct Fields {
    message: String,
    slot: Option<String>,
    rest: Vec<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.record(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.record(field, format!("{value:?}"));
    }
}

impl Fields {
    fn record(&mut self, field: &Field, value: String) {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        match field.name() {
            "message" => self.message = value,
            "slot" => self.slot = Some(value),
            name => self.rest.push(format!("{name}={value}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn progress_lines_are_rate_limited() {
        let t0 = Instant::now();
        let mut c = Console::new("s");
        assert!(c.sending_line(t0, 0, 1, 500).is_some());
        assert!(
            c.sending_line(t0 + Duration::from_millis(10), 0, 1, 500)
                .is_none(),
            "a second line within the interval is suppressed"
        );
    }

    /// Lines of a run with every line due (an hour between calls).
    fn lines(calls: &[(usize, usize)], idle_after: &[usize]) -> Vec<String> {
        let mut c = Console::new("orders");
        let mut now = Instant::now();
        let mut out = Vec::new();
        for (i, &(queue, batch)) in calls.iter().enumerate() {
            now += Duration::from_secs(3600);
            out.extend(c.sending_line(now, queue, batch, 500));
            if idle_after.contains(&i) {
                out.extend(c.waiting_line(now, 0));
            }
        }
        out
    }

    #[test]
    fn n_stays_fixed_within_a_burst_however_many_changes_arrive_meanwhile() {
        // 1200 changes wait: 3 chunks. More arrive while they go out (the queue grows),
        // and they wait for the next burst instead of stretching this one.
        let got = lines(&[(700, 500), (900, 500), (1400, 200), (1400, 500)], &[3]);
        let expect = [
            "[orders] Sending changes to Kinesis: 1 of 3 chunks. (Queue length: 700)",
            "[orders] Sending changes to Kinesis: 2 of 3 chunks. (Queue length: 900)",
            "[orders] Sending changes to Kinesis: 3 of 3 chunks. (Queue length: 1400)",
            "[orders] Sending changes to Kinesis: 1 of 4 chunks. (Queue length: 1400)",
            "[orders] Waiting records to process. (Queue length: 0)",
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn a_burst_ends_when_its_changes_are_sent_or_everything_is_delivered() {
        // Small requests (per-key pacing) send the burst's 600 changes in 2 of 2.
        let got = lines(&[(100, 500), (0, 100), (0, 5)], &[1, 2]);
        assert_eq!(
            got,
            [
                "[orders] Sending changes to Kinesis: 1 of 2 chunks. (Queue length: 100)",
                "[orders] Sending changes to Kinesis: 2 of 2 chunks. (Queue length: 0)",
                "[orders] Waiting records to process. (Queue length: 0)",
                "[orders] Sending changes to Kinesis: 1 of 1 chunks. (Queue length: 0)",
                "[orders] Waiting records to process. (Queue length: 0)",
            ]
        );
    }

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'w self) -> Buffer {
            self.clone()
        }
    }

    #[test]
    fn console_format_prints_the_original_lines_byte_for_byte_and_plain_warnings() {
        let (out, err) = (Buffer::default(), Buffer::default());
        let subscriber = tracing_subscriber::registry().with(ConsoleLayer {
            out: out.clone(),
            err: err.clone(),
        });
        tracing::subscriber::with_default(subscriber, || {
            let mut c = Console::new("my_slot");
            c.waiting(0);
            c.sending(4500, 500, 500);
            tracing::info!(slot = "my_slot", "streaming from somewhere");
            tracing::warn!(slot = "my_slot", stream = "s", retry_in = %"0.63s", "[my_slot] PutRecords not accepted,\nwill retry");
            tracing::error!("the config is wrong");
        });
        assert_eq!(
            String::from_utf8(out.0.lock().unwrap().clone()).unwrap(),
            "[my_slot] Waiting records to process. (Queue length: 0)\n\
             [my_slot] Sending changes to Kinesis: 1 of 10 chunks. (Queue length: 4500)\n"
        );
        assert_eq!(
            String::from_utf8(err.0.lock().unwrap().clone()).unwrap(),
            "[my_slot] warning: PutRecords not accepted, will retry (stream=s, retry_in=0.63s)\n\
             error: the config is wrong\n"
        );
    }
}
