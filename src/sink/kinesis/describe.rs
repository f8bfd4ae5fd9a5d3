//! What the sink learns of its stream: that it exists and the largest record it takes
//! (`DescribeStreamSummary`, at start-up), and its open shards (`ListShards`, at start
//! and again when answers suggest a reshard). Neither stops a slot that may not ask.

use std::sync::atomic::Ordering;

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kinesis::operation::describe_stream_summary::DescribeStreamSummaryError;

use super::shards::{self, ShardMap};
use super::{KinesisSink, SinkError, SinkStats, DEFAULT_MAX_RECORD_BYTES};

impl KinesisSink {
    /// Check that the stream exists and learn its largest record size. A missing
    /// stream stops the slot; not being allowed to describe it is fine.
    pub async fn prepare(&self) -> Result<usize, SinkError> {
        let configured = self.batch.max_record_bytes;
        let result = self
            .client
            .describe_stream_summary()
            .stream_name(&self.stream)
            .send()
            .await;
        match result {
            Ok(out) => {
                let from_stream = out
                    .stream_description_summary()
                    .and_then(|s| s.max_record_size_in_kib())
                    .and_then(|kib| usize::try_from(kib).ok())
                    .map(|kib| kib * 1024);
                let limit = configured.or(from_stream).unwrap_or(DEFAULT_MAX_RECORD_BYTES);
                let _ = self.record_limit.set(limit);
                Ok(limit)
            }
            Err(SdkError::ServiceError(e)) => match e.err() {
                DescribeStreamSummaryError::ResourceNotFoundException(_) => Err(SinkError::Permanent {
                    stream: self.stream.clone(),
                    reason: "the stream does not exist: create it (or deploy the CDK app), or fix kns_stream/region in the config".into(),
                }),
                other if e.raw().status().is_server_error() || other.code().is_some_and(|c| c.contains("Throttl") || c == "LimitExceededException") => {
                    Err(SinkError::Transient { stream: self.stream.clone(), reason: format!("DescribeStreamSummary failed: {other}") })
                }
                // Access denied, or an emulator without the operation: go on with the configured or default limit.
                other => {
                    tracing::warn!(slot = %self.slot, stream = %self.stream, "cannot describe the stream ({}); assuming records of up to {} bytes", other.code().unwrap_or("error"), configured.unwrap_or(DEFAULT_MAX_RECORD_BYTES));
                    Ok(configured.unwrap_or(DEFAULT_MAX_RECORD_BYTES))
                }
            },
            Err(other) => Err(SinkError::Transient {
                stream: self.stream.clone(),
                reason: crate::telemetry::aws_error(
                    "Kinesis",
                    "DescribeStreamSummary",
                    &other,
                    "the network path to Kinesis (VPC endpoint or NAT) and the region",
                ),
            }),
        }
    }

    /// The stream's open shards; the one-range stand-in (no pacing, aggregates of
    /// one key) when they cannot be listed.
    pub(super) async fn shard_map(&self, stats: &SinkStats) -> ShardMap {
        stats.shard_map_loads.fetch_add(1, Ordering::Relaxed);
        match shards::list_open_shards(&self.client, &self.stream).await {
            Ok(map) if map.is_known() => map,
            Ok(_) => {
                tracing::warn!(slot = %self.slot, stream = %self.stream, "ListShards returned an incomplete layout (a reshard in progress?); sending without per-shard pacing until the next listing");
                ShardMap::unknown()
            }
            Err(e) => {
                tracing::warn!(slot = %self.slot, stream = %self.stream, "{e}; sending without per-shard pacing (grant kinesis:ListShards on the stream to pace each shard)");
                ShardMap::unknown()
            }
        }
    }
}
