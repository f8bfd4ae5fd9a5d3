//! Tests of the test harness itself: kinesalite round trips, the stub's fault script
//! and the verifier on crafted deliveries (through the AWS SDK directly), and the case
//! builder's clean-up after a failed test. If these fail, every end-to-end result is
//! suspect.
//!
//! Shared here: the PutRecords entries, their ground truth and a client without retries;
//! one submodule per piece of the harness.

mod case;
mod emulators;
mod stub;
mod verifier;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use aws_sdk_kinesis::Client;

use crate::support::stub::KinesisStub;

/// `n` entries keyed `k0..k{keys}` round robin, data `"<key>:<id>"`.
fn entries(n: u64, keys: u64) -> Vec<PutRecordsRequestEntry> {
    (0..n)
        .map(|id| {
            let key = format!("k{}", id % keys);
            PutRecordsRequestEntry::builder()
                .partition_key(&key)
                .data(Blob::new(format!("{key}:{id}")))
                .build()
                .expect("entry has data and key")
        })
        .collect()
}

fn ground_truth(n: u64, keys: u64) -> Vec<(String, u64)> {
    (0..n).map(|id| (format!("k{}", id % keys), id)).collect()
}

/// (key, id) back from `"<key>:<id>"`.
fn parse(data: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(data).ok()?;
    let (key, id) = text.split_once(':')?;
    Some((key.to_string(), id.parse().ok()?))
}

/// A client that surfaces every fault instead of retrying it away.
fn no_retry_client(stub: &KinesisStub, attempt_timeout: Option<Duration>) -> Client {
    let mut timeouts = TimeoutConfig::builder();
    if let Some(t) = attempt_timeout {
        timeouts = timeouts.operation_attempt_timeout(t);
    }
    let config = stub
        .sdk_config()
        .into_builder()
        .retry_config(RetryConfig::disabled())
        .timeout_config(timeouts.build())
        .build();
    Client::new(&config)
}
