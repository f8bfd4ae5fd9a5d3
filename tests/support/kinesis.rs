//! Kinesis side of the test harness: one kinesalite server per test binary, an SDK
//! config pointing at any Kinesis-compatible endpoint, and helpers that create a stream
//! and read it back shard by shard. The delivery verifier lives in `kinesis/verify.rs`,
//! the reading of records kinesalite took in CBOR in `kinesis/buffer.rs`.
//!
//! Must never touch real AWS: every config built here carries a fixed endpoint and static
//! throwaway credentials, and nothing reads the environment's AWS settings.
#![allow(dead_code)]

mod buffer;
pub mod verify;

pub use verify::{verify, Verdict};

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_kinesis::config::{Credentials, SharedCredentialsProvider};
use aws_sdk_kinesis::error::DisplayErrorContext;
use aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use aws_sdk_kinesis::Client;

/// How long kinesalite may take to start listening; node cold starts take ~1 s here.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// kinesalite caps GetRecords at 10,000 records per call, like Kinesis.
const GET_RECORDS_LIMIT: i32 = 10_000;

/// A kinesalite server shared by every test in this binary.
#[derive(Debug)]
pub struct Kinesalite {
    /// `http://127.0.0.1:PORT`, ready for [`sdk_config`].
    pub endpoint: String,
    pub port: u16,
    pub pid: u32,
}

impl Kinesalite {
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.endpoint)
    }

    pub fn client(&self) -> Client {
        Client::new(&self.sdk_config())
    }
}

/// The shared kinesalite, started on first use (streams are created and deleted
/// instantly, so tests need not wait), and killed when the test process exits.
pub fn kinesalite() -> &'static Kinesalite {
    static SERVER: OnceLock<Kinesalite> = OnceLock::new();
    SERVER.get_or_init(|| {
        // A port picked by binding :0 can be taken by someone else before kinesalite
        // binds it, so retry a couple of times on a fresh port.
        let mut last_err = String::new();
        for _ in 0..3 {
            match start_kinesalite() {
                Ok(server) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("could not start kinesalite: {last_err}")
    })
}

fn kinesalite_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("KINESALITE_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/node/node_modules/.bin/kinesalite")
}

fn start_kinesalite() -> Result<Kinesalite, String> {
    let bin = kinesalite_bin();
    if !bin.exists() {
        return Err(format!(
            "{} does not exist: run scripts/install-deps or set KINESALITE_BIN",
            bin.display()
        ));
    }
    let port = free_port();
    let log = std::env::temp_dir().join(format!("kinesalite-{port}.log"));
    let log_file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(&bin);
    cmd.args(["--port", &port.to_string()])
        .args([
            "--createStreamMs",
            "0",
            "--deleteStreamMs",
            "0",
            "--updateStreamMs",
            "0",
        ])
        .args(["--shardLimit", "1000"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    let pid = super::daemon::spawn_listening(
        cmd,
        "kinesalite",
        port,
        STARTUP_TIMEOUT,
        &log.display().to_string(),
    )?;
    Ok(Kinesalite {
        endpoint: format!("http://127.0.0.1:{port}"),
        port,
        pid,
    })
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("no free local port: {e}"))
}

/// SDK config for a Kinesis-compatible endpoint (kinesalite, the stub) with static
/// test credentials: neither server checks signatures, but the SDK insists on signing.
pub fn sdk_config(endpoint: &str) -> SdkConfig {
    let credentials = Credentials::new("AKIDTEST", "test-secret", None, None, "pg-cdc-tests");
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        .build()
}

/// A stream name no other test (or earlier run against the same server) uses.
pub fn unique_stream_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Creates `name` with `shards` shards and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap_or_else(|e| panic!("CreateStream {name}: {}", DisplayErrorContext(&e)));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let summary = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!("DescribeStreamSummary {name}: {}", DisplayErrorContext(&e))
            });
        let status = summary
            .stream_description_summary()
            .map(|s| s.stream_status().clone());
        if status == Some(StreamStatus::Active) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "stream {name} not ACTIVE after 30 s: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes a stream; a stream that is already gone is fine.
pub async fn delete_stream(client: &Client, name: &str) {
    let _ = client
        .delete_stream()
        .stream_name(name)
        .enforce_consumer_deletion(true)
        .send()
        .await;
}

/// One record as read back from a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
    pub shard_id: String,
    pub sequence_number: String,
}

impl ReadRecord {
    /// The payload as JSON, for tests of the streamer's record format.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.data)
    }
}

/// Every record in `stream`, shard after shard (in shard id order), each shard from
/// TRIM_HORIZON to its current end in sequence order.
pub async fn read_all(client: &Client, stream: &str) -> Vec<ReadRecord> {
    let mut out = Vec::new();
    for shard_id in shard_ids(client, stream).await {
        read_shard(client, stream, &shard_id, &mut out).await;
    }
    out
}

/// Polls [`read_all`] until at least `n` records exist or `timeout` passes, and returns
/// what it read last either way: the caller's verifier reports what is missing.
pub async fn read_until(
    client: &Client,
    stream: &str,
    n: usize,
    timeout: Duration,
) -> Vec<ReadRecord> {
    let deadline = Instant::now() + timeout;
    loop {
        let records = read_all(client, stream).await;
        if records.len() >= n || Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn shard_ids(client: &Client, stream: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        // ListShards refuses StreamName together with NextToken.
        let request = match &next_token {
            Some(token) => client.list_shards().next_token(token),
            None => client.list_shards().stream_name(stream),
        };
        let page = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("ListShards {stream}: {}", DisplayErrorContext(&e)));
        ids.extend(page.shards().iter().map(|s| s.shard_id().to_string()));
        next_token = page.next_token().map(str::to_string);
        if next_token.is_none() {
            break;
        }
    }
    ids.sort();
    ids
}

async fn read_shard(client: &Client, stream: &str, shard_id: &str, out: &mut Vec<ReadRecord>) {
    let iterator = client
        .get_shard_iterator()
        .stream_name(stream)
        .shard_id(shard_id)
        .shard_iterator_type(ShardIteratorType::TrimHorizon)
        .send()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "GetShardIterator {stream}/{shard_id}: {}",
                DisplayErrorContext(&e)
            )
        });
    let mut iterator = iterator.shard_iterator().map(str::to_string);
    while let Some(it) = iterator {
        let page = client
            .get_records()
            .shard_iterator(it)
            .limit(GET_RECORDS_LIMIT)
            .customize()
            .interceptor(buffer::BufferData)
            .send()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetRecords {stream}/{shard_id}: {}",
                    DisplayErrorContext(&e)
                )
            });
        let got = page.records().len();
        out.extend(page.records().iter().map(|r| ReadRecord {
            partition_key: r.partition_key().unwrap_or_default().to_string(),
            data: r.data().as_ref().to_vec(),
            shard_id: shard_id.to_string(),
            sequence_number: r.sequence_number().to_string(),
        }));
        // An open shard never ends: an empty page that is caught up is "the end for now".
        if got == 0 && page.millis_behind_latest().unwrap_or(0) == 0 {
            break;
        }
        iterator = page.next_shard_iterator().map(str::to_string);
    }
}

/// One PutRecords call straight to `stream` (for tests of the endpoints themselves);
/// panics with the SDK's error context.
pub async fn put(
    client: &Client,
    stream: &str,
    entries: Vec<aws_sdk_kinesis::types::PutRecordsRequestEntry>,
) -> aws_sdk_kinesis::operation::put_records::PutRecordsOutput {
    client
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .send()
        .await
        .unwrap_or_else(|e| panic!("PutRecords: {}", DisplayErrorContext(&e)))
}
