//! `tail`: print the records of a Kinesis stream, like a developer's `kcat`.
//!
//! Owns reading a stream back (every shard, from the tip or from the start, to its end
//! or on and on with `follow`), de-aggregating KPL aggregates so that each user record
//! is one record whatever the producer's `aggregation`, the reading order (shard by
//! shard, or sorted by `(commit_lsn, seq)`); the output formats are `print`'s. It never
//! writes to the stream.

mod print;

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;
use serde::Deserialize;
use tokio::time::Instant;

use crate::lsn::Lsn;
use crate::sink::kinesis::aggregate;
use crate::telemetry::aws_error;
use print::Printer;

/// What to check when Kinesis refuses a read.
const STREAM_CHECK: &str =
    "the stream name and region, and that the caller may call kinesis:ListShards, kinesis:GetShardIterator and kinesis:GetRecords on it";

/// How long to wait before asking a shard again when no shard had anything new.
const IDLE_POLL: Duration = Duration::from_millis(500);
/// What `--ordered` may hold to sort: past it, reading stops (with a note), so that a
/// large stream cannot exhaust memory. `--limit` reads less.
const ORDERED_MAX_BYTES: usize = 256 * 1024 * 1024;
/// How long to back off when Kinesis says a shard is read too often (5 reads/s each).
const THROTTLE_BACKOFF: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[error("tail {stream:?}: {reason}")]
pub struct TailError {
    pub stream: String,
    pub reason: String,
}

/// How each record is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// The record's data as it is: one JSON object per line.
    #[default]
    Json,
    /// Indented JSON, for reading (values keep their exact text).
    Pretty,
    /// The Debezium PostgreSQL connector's envelope (schema-less JSON), one per line.
    Debezium,
}

/// What `tail` reads and how it prints it.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    /// Start at the oldest record (TRIM_HORIZON) instead of the tip (LATEST).
    pub from_start: bool,
    /// Stop after this many (user) records.
    pub limit: Option<usize>,
    /// Keep waiting for new records once every shard was read to its end.
    pub follow: bool,
    /// Stop after this long, whatever else.
    pub timeout: Option<Duration>,
    /// Read, then print sorted by `(commit_lsn, seq)` instead of shard by shard.
    pub ordered: bool,
    pub format: Format,
    /// The Debezium `source.name` (the slot's name).
    pub name: String,
}

/// Why reading stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Every shard was read to its end.
    AtEnd,
    /// `limit` records were read.
    Limit,
    /// `timeout` passed.
    Timeout,
}

/// One user record read.
#[derive(Debug)]
struct Read {
    shard: String,
    data: Vec<u8>,
}

impl Read {
    /// `(commit_lsn, seq)` of a native record; `None` for anything else.
    fn order(&self) -> Option<(Lsn, u64)> {
        #[derive(Deserialize)]
        struct Order {
            commit_lsn: String,
            seq: u64,
        }
        let o: Order = serde_json::from_slice(&self.data).ok()?;
        Some((o.commit_lsn.parse().ok()?, o.seq))
    }
}

/// Print the records of `stream` to `out`: by default shard by shard until every
/// shard was read to its end, each shard announced by a label line. Labels and notes
/// go to `notes` (stderr) for the line formats, so that `out` stays one record per
/// line; with `pretty`, which is for people, they go to `out`. A KPL aggregate prints
/// one record per user record, and counts as that many records.
pub async fn tail(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    opts: &TailOptions,
    out: &mut (dyn std::io::Write + Send),
    notes: &mut (dyn std::io::Write + Send),
) -> Result<Ended, TailError> {
    let err = |reason: String| TailError {
        stream: stream.to_string(),
        reason,
    };
    let deadline = opts.timeout.map(|t| Instant::now() + t);
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| err(aws_error("Kinesis", "ListShards", &e, STREAM_CHECK)))?;
    let kind = if opts.from_start {
        ShardIteratorType::TrimHorizon
    } else {
        ShardIteratorType::Latest
    };
    let mut cursors = Vec::new();
    for shard in shards.shards() {
        let it = client
            .get_shard_iterator()
            .stream_name(stream)
            .shard_id(shard.shard_id())
            .shard_iterator_type(kind.clone())
            .send()
            .await
            .map_err(|e| {
                err(format!(
                    "shard {}: {}",
                    shard.shard_id(),
                    aws_error("Kinesis", "GetShardIterator", &e, STREAM_CHECK)
                ))
            })?;
        cursors.push(Cursor {
            shard: shard.shard_id().to_string(),
            iterator: it.shard_iterator().map(str::to_string),
            at_end: false,
        });
    }
    let mut printer = Printer::new(opts, out, notes);
    let mut kept = Vec::new();
    let mut kept_bytes = 0usize;
    let mut count = 0usize;
    let ended = 'reading: loop {
        let mut any = false;
        for cursor in cursors.iter_mut() {
            let Some(it) = cursor.iterator.clone() else {
                cursor.at_end = true;
                continue;
            };
            let call = client.get_records().shard_iterator(it).send();
            let page = match deadline {
                Some(d) => match tokio::time::timeout_at(d, call).await {
                    Ok(page) => page,
                    Err(_) => break 'reading Ended::Timeout,
                },
                None => call.await,
            };
            let page = match page {
                Ok(page) => page,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_provisioned_throughput_exceeded_exception()) =>
                {
                    tokio::time::sleep(THROTTLE_BACKOFF).await;
                    continue;
                }
                Err(e) => return Err(err(aws_error("Kinesis", "GetRecords", &e, STREAM_CHECK))),
            };
            cursor.iterator = page.next_shard_iterator().map(str::to_string);
            // Kinesis may answer an empty page in the middle of a shard; only an empty
            // page that is not behind the tip (or a closed shard's last) is its end.
            cursor.at_end = cursor.iterator.is_none()
                || (page.records().is_empty() && page.millis_behind_latest().unwrap_or(0) == 0);
            for record in page.records() {
                any = true;
                for data in user_records(
                    record.partition_key().unwrap_or_default(),
                    record.data().as_ref(),
                ) {
                    let read = Read {
                        shard: cursor.shard.clone(),
                        data,
                    };
                    if opts.ordered {
                        kept_bytes += read.data.len() + read.shard.len();
                        kept.push(read);
                        if kept_bytes > ORDERED_MAX_BYTES {
                            printer.note(&format!(
                                "--ordered holds what it sorts in memory: stopped reading at {} records ({} MiB); use --limit to sort fewer",
                                kept.len(),
                                ORDERED_MAX_BYTES >> 20
                            ));
                            break 'reading Ended::Limit;
                        }
                    } else {
                        printer.print(&read, true);
                    }
                    count += 1;
                    if opts.limit.is_some_and(|l| count >= l) {
                        break 'reading Ended::Limit;
                    }
                }
            }
        }
        printer.flush();
        if !opts.follow && cursors.iter().all(|c| c.at_end) {
            break Ended::AtEnd;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break Ended::Timeout;
        }
        if !any {
            let wake = Instant::now() + IDLE_POLL;
            tokio::time::sleep_until(deadline.map_or(wake, |d| d.min(wake))).await;
        }
    };
    if opts.ordered {
        // A stable sort: records that are not ours keep their reading order, last.
        kept.sort_by_key(|r| match r.order() {
            Some(key) => (false, key),
            None => (true, (Lsn(0), 0)),
        });
        printer.note(&format!(
            "== {} records from {} shards, sorted by (commit_lsn, seq) ==",
            kept.len(),
            cursors.len()
        ));
        for read in &kept {
            printer.print(read, false);
        }
    }
    if count == 0 && !opts.from_start && !opts.follow && ended == Ended::AtEnd {
        printer.note(
            "no new records; --from-start reads the stream from its oldest record, --follow waits for new ones",
        );
    }
    printer.flush();
    Ok(ended)
}

struct Cursor {
    shard: String,
    iterator: Option<String>,
    at_end: bool,
}

/// The user records of one fetched record: its data, or the data of each user record
/// when it is a KPL aggregate. An aggregate that does not decode is passed on as it
/// is, like the KCL passes it on, after a warning.
fn user_records(partition_key: &str, data: &[u8]) -> Vec<Vec<u8>> {
    match aggregate::deaggregate(partition_key, data) {
        Ok(records) => records.into_iter().map(|r| r.data).collect(),
        Err(e) => {
            tracing::warn!(partition_key, "printing the record as it is: {e}");
            vec![data.to_vec()]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregate::Aggregator;

    #[test]
    fn a_plain_record_is_one_user_record() {
        assert_eq!(
            user_records("k", br#"{"kind":"insert"}"#),
            [br#"{"kind":"insert"}"#.to_vec()]
        );
    }

    #[test]
    fn an_aggregate_is_its_user_records_in_order() {
        let mut agg = Aggregator::new();
        agg.push("public.t|1", br#"{"seq":0}"#);
        agg.push("public.t|2", br#"{"seq":1}"#);
        agg.push("public.t|1", br#"{"seq":2}"#);
        assert_eq!(
            user_records("public.t|1", &agg.finish()),
            [
                br#"{"seq":0}"#.to_vec(),
                br#"{"seq":1}"#.to_vec(),
                br#"{"seq":2}"#.to_vec()
            ]
        );
    }

    #[test]
    fn a_corrupt_aggregate_is_passed_on_as_it_is() {
        let mut agg = Aggregator::new();
        agg.push("k", b"row");
        let mut data = agg.finish();
        let last = data.len() - 1;
        data[last] ^= 0xFF;
        assert_eq!(user_records("k", &data), [data.clone()]);
    }

    #[test]
    fn the_order_key_is_commit_lsn_then_seq() {
        let read = |data: &str| Read {
            shard: "s".into(),
            data: data.as_bytes().to_vec(),
        };
        assert_eq!(
            read(r#"{"commit_lsn":"0/1A","seq":3}"#).order(),
            Some((Lsn(0x1A), 3))
        );
        assert_eq!(read(r#"{"seq":3}"#).order(), None);
        assert_eq!(read("x").order(), None);
    }
}
