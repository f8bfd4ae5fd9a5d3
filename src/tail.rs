//! `tail`: print the records of a Kinesis stream, like a developer's `kcat`.
//!
//! Owns reading a stream back (every shard, from the tip or from the start). It
//! never writes to the stream.

use std::time::Duration;

use aws_sdk_kinesis::types::ShardIteratorType;

use crate::telemetry::error_chain;

#[derive(Debug, thiserror::Error)]
#[error("tail {stream:?}: {reason}")]
pub struct TailError {
    pub stream: String,
    pub reason: String,
}

/// Print every record of `stream` as one line (its data, as text) to `out` until
/// `limit` records were printed (if set) or forever.
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
        .map_err(|e| err(format!("cannot list shards: {}", error_chain(&e))))?;
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
                    "cannot read shard {}: {}",
                    shard.shard_id(),
                    error_chain(&e)
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
                .map_err(|e| err(format!("cannot get records: {}", error_chain(&e))))?;
            for record in page.records() {
                any = true;
                let _ = writeln!(out, "{}", String::from_utf8_lossy(record.data().as_ref()));
                printed += 1;
                if limit.is_some_and(|l| printed >= l) {
                    return Ok(());
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
