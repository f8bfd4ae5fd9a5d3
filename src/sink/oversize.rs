//! Claim checks' S3 objects: the S3 client, and the uploads the Kinesis sink waits
//! for before it sends a claim check.
//!
//! Owns the S3 client settings (the shared AWS settings, path-style addressing
//! behind an endpoint override such as moto or MinIO) and the retry of a failed
//! `PutObject`: with backoff, for as long as it takes. An upload is never skipped:
//! until its object is stored, the claim check stays in its key's queue, so the
//! slot's position is not acknowledged past it. It never sends to Kinesis.

use std::time::Duration;

use base64::Engine;
use tokio::task::JoinSet;

use crate::record::oversize::Offload;

/// One `PutObject` attempt may take this long (2 MiB over a slow link included).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Failed uploads are retried from 100 ms, doubling, up to this wait.
const MAX_UPLOAD_BACKOFF: Duration = Duration::from_secs(30);
/// After this many failed attempts in a row, each further failure is logged as an
/// error: the slot's acknowledgement is stuck behind the row.
const ATTEMPTS_BEFORE_ERROR: u32 = 5;

/// An S3 client from the shared AWS settings. `AWS_ENDPOINT_URL_S3` (or
/// `AWS_ENDPOINT_URL`) moves it to another endpoint, as for the other clients; an
/// overridden endpoint is addressed path-style (`endpoint/bucket/key`), which
/// S3-compatible servers (moto, MinIO) need, while AWS's own endpoint keeps
/// virtual-hosted addressing (`bucket.s3.region.amazonaws.com`).
pub fn s3_client(aws: &aws_config::SdkConfig, region: Option<&str>) -> aws_sdk_s3::Client {
    let overridden =
        aws.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
    let mut builder = aws_sdk_s3::config::Builder::from(aws)
        .force_path_style(overridden)
        // The upload loop below has its own backoff and never gives up; SDK retries
        // would only hide an outage for longer.
        .retry_config(aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        );
    if let Some(region) = region {
        builder = builder.region(aws_sdk_s3::config::Region::new(region.to_string()));
    }
    aws_sdk_s3::Client::from_conf(builder.build())
}

/// Uploads in progress for one slot's sink: each ends when its object is stored.
#[derive(Debug)]
pub struct Uploads {
    client: Option<aws_sdk_s3::Client>,
    slot: String,
    tasks: JoinSet<(String, u64)>,
    /// Bytes of the full records being uploaded, for the sink's memory budget.
    bytes: usize,
    sizes: std::collections::HashMap<u64, usize>,
}

impl Uploads {
    /// `client` is `None` for a slot that never offloads.
    pub fn new(client: Option<aws_sdk_s3::Client>, slot: &str) -> Self {
        Uploads {
            client,
            slot: slot.to_string(),
            tasks: JoinSet::new(),
            bytes: 0,
            sizes: std::collections::HashMap::new(),
        }
    }

    /// Start storing the object of the claim check `seq` (partition key `key`).
    pub fn start(
        &mut self,
        seq: u64,
        partition_key: String,
        offload: Offload,
    ) -> Result<(), String> {
        let Some(client) = self.client.clone() else {
            return Err(format!(
                "a claim check for s3://{}/{} reached a sink without an S3 client",
                offload.bucket, offload.key
            ));
        };
        self.bytes += offload.body.len();
        self.sizes.insert(seq, offload.body.len());
        let slot = self.slot.clone();
        self.tasks.spawn(async move {
            store(&client, &slot, &offload).await;
            (partition_key, seq)
        });
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Bytes held by uploads in progress.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The next stored object: its claim check's partition key and sequence number.
    /// Pending forever when nothing is uploading.
    pub async fn next(&mut self) -> Result<(String, u64), String> {
        match self.tasks.join_next().await {
            Some(Ok((key, seq))) => {
                self.bytes -= self.sizes.remove(&seq).unwrap_or(0);
                Ok((key, seq))
            }
            Some(Err(e)) => Err(format!("an S3 upload task failed: {e}")),
            None => std::future::pending().await,
        }
    }
}

/// Put the object until S3 takes it.
async fn store(client: &aws_sdk_s3::Client, slot: &str, offload: &Offload) {
    let sha256 = base64::engine::general_purpose::STANDARD.encode(offload.sha256);
    let mut attempt: u32 = 0;
    loop {
        let result = client
            .put_object()
            .bucket(&offload.bucket)
            .key(&offload.key)
            .content_type("application/json")
            // S3 checks the body against the claim check's hash before storing it.
            .checksum_sha256(&sha256)
            .body(aws_sdk_s3::primitives::ByteStream::from(
                offload.body.clone(),
            ))
            .send()
            .await;
        match result {
            Ok(_) => {
                if attempt > 0 {
                    tracing::info!(slot, bucket = %offload.bucket, key = %offload.key, attempts = attempt + 1, "claim check's S3 object stored after retries");
                }
                return;
            }
            Err(e) => {
                attempt += 1;
                let delay = backoff(attempt);
                let message = crate::telemetry::aws_error(
                    "S3",
                    "PutObject",
                    &e,
                    "that the bucket exists and the task may s3:PutObject under oversize_prefix",
                );
                if attempt >= ATTEMPTS_BEFORE_ERROR {
                    tracing::error!(slot, bucket = %offload.bucket, key = %offload.key, attempt, retry_in = %crate::telemetry::secs(delay), "{message}; the oversized row's claim check waits, and the slot is not acknowledged past it");
                } else {
                    tracing::warn!(slot, bucket = %offload.bucket, key = %offload.key, attempt, retry_in = %crate::telemetry::secs(delay), "{message}; will retry");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// 100 ms doubling per attempt up to [`MAX_UPLOAD_BACKOFF`], then a random point in
/// its upper half.
fn backoff(attempt: u32) -> Duration {
    let exp = Duration::from_millis(100)
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_UPLOAD_BACKOFF);
    let half = exp / 2;
    half + exp.mul_f64(rand::Rng::random_range(&mut rand::rng(), 0.0..0.5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_backoff_grows_to_its_cap() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= MAX_UPLOAD_BACKOFF);
        }
        assert!(backoff(6) > backoff(1));
    }

    #[tokio::test]
    async fn a_claim_check_without_an_s3_client_is_refused_not_dropped_silently() {
        let mut uploads = Uploads::new(None, "s");
        let offload = Offload {
            bucket: "b".into(),
            key: "k".into(),
            body: bytes::Bytes::from_static(b"{}"),
            sha256: [0; 32],
        };
        assert!(uploads.start(1, "pk".into(), offload).is_err());
        assert!(uploads.is_empty());
    }
}
