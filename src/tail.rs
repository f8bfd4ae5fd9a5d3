//! `tail`: print the records of a Kinesis stream, like a developer's `kcat`.
//!
//! Owns reading a stream back (every shard, from the tip or from the start) and
//! de-aggregating KPL aggregates, so that each user record is one line whatever the
//! producer's `aggregation`. It never writes to the stream.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;

use crate::sink::kinesis::aggregate;
use crate::telemetry::aws_error;

/// What to check when Kinesis refuses a read.
const STREAM_CHECK: &str =
    "the stream name and region, and that the caller may call kinesis:ListShards, kinesis:GetShardIterator and kinesis:GetRecords on it";

#[derive(Debug, thiserror::Error)]
#[error("tail {stream:?}: {reason}")]
pub struct TailError {
    pub stream: String,
    pub reason: String,
}

/// Print every record of `stream` as one line (its data, as text) to `out` until
/// `limit` records were printed (if set) or forever. A KPL aggregate prints one line
/// per user record, and counts as that many records.
pub async fn tail(
    client: &aws_sdk_kinesis::Client,
    stream: &str,
    from_start: bool,
    limit: Option<usize>,
    out: &mut (dyn std::io::Write + Send),
) -> Result<(), TailError> {
    let err = |reason: String| TailError {
        stream: stream.to_string(),
        reason,
    };
    let shards = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .map_err(|e| err(aws_error("Kinesis", "ListShards", &e, STREAM_CHECK)))?;
    let kind = if from_start {
        ShardIteratorType::TrimHorizon
    } else {
        ShardIteratorType::Latest
    };
    let mut iterators = Vec::new();
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
        iterators.push(it.shard_iterator().map(str::to_string));
    }
    let mut printed = 0usize;
    loop {
        let mut any = false;
        for slot in iterators.iter_mut() {
            let Some(it) = slot.clone() else { continue };
            let page = client
                .get_records()
                .shard_iterator(it)
                .send()
                .await
                .map_err(|e| err(aws_error("Kinesis", "GetRecords", &e, STREAM_CHECK)))?;
            for record in page.records() {
                any = true;
                for line in record_lines(
                    record.partition_key().unwrap_or_default(),
                    record.data().as_ref(),
                ) {
                    let _ = writeln!(out, "{line}");
                    printed += 1;
                    if limit.is_some_and(|l| printed >= l) {
                        let _ = out.flush();
                        return Ok(());
                    }
                }
            }
            *slot = page.next_shard_iterator().map(str::to_string);
        }
        let _ = out.flush();
        if !any {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

/// The lines printed for one fetched record: its data as text, or the data of each
/// user record when it is a KPL aggregate. An aggregate that does not decode is printed
/// as it is, like the KCL passes it on, after a warning on stderr.
fn record_lines(partition_key: &str, data: &[u8]) -> Vec<String> {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    match aggregate::deaggregate(partition_key, data) {
        Ok(records) => records.iter().map(|r| text(&r.data)).collect(),
        Err(e) => {
            tracing::warn!(partition_key, "printing the record as it is: {e}");
            vec![text(data)]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregate::Aggregator;

    #[test]
    fn a_plain_record_is_one_line_of_its_data() {
        assert_eq!(
            record_lines("k", br#"{"kind":"insert"}"#),
            [r#"{"kind":"insert"}"#]
        );
    }

    #[test]
    fn an_aggregate_is_one_line_per_user_record_in_order() {
        let mut agg = Aggregator::new();
        agg.push("public.t|1", br#"{"seq":0}"#);
        agg.push("public.t|2", br#"{"seq":1}"#);
        agg.push("public.t|1", br#"{"seq":2}"#);
        assert_eq!(
            record_lines("public.t|1", &agg.finish()),
            [r#"{"seq":0}"#, r#"{"seq":1}"#, r#"{"seq":2}"#]
        );
    }

    #[test]
    fn a_corrupt_aggregate_is_printed_as_it_is() {
        let mut agg = Aggregator::new();
        agg.push("k", b"row");
        let mut data = agg.finish();
        let last = data.len() - 1;
        data[last] ^= 0xFF;
        let lines = record_lines("k", &data);
        assert_eq!(lines, [String::from_utf8_lossy(&data).into_owned()]);
    }
}
