//! The Kinesis endpoint of `scripts/bench`: the test stub (`tests/support/stub.rs`,
//! included as is, so tests and benchmark trust one stub) served on a fixed port, with
//! every stream created on first use and records counted rather than kept.
//! `GET /stats/<stream>` answers the stream's counters, per-shard figures, per-key order
//! check and commit-to-acceptance latency (streams named `lat*`) as JSON.
//!
//! Without model flags it accepts everything at once (the throughput benchmark measures
//! the streamer, not Kinesis). `--kinesis-model` turns on the model of a provisioned
//! stream: 20 ms per call and Kinesis' per-shard limits (1,000 records/s, 1 MiB/s).
//!
//! Usage: `bench_sink --port PORT [--shards N] [--on-demand] [--kinesis-model]
//!         [--latency-ms MS] [--limits RECORDS_PER_S,BYTES_PER_S]`
//! (serves 127.0.0.1:PORT until SIGTERM/SIGINT).

#[path = "../tests/support/stub.rs"]
mod stub;

use std::time::Duration;

use anyhow::{bail, Context};

const USAGE: &str = "usage: bench_sink --port PORT [--shards N] [--on-demand] [--kinesis-model] \
                     [--latency-ms MS] [--limits RECORDS_PER_S,BYTES_PER_S]";

struct Args {
    port: u16,
    shards: u32,
    on_demand: bool,
    latency: Duration,
    limits: Option<(u32, u64)>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut parsed = Args {
        port: 0,
        shards: 1,
        on_demand: false,
        latency: Duration::ZERO,
        limits: None,
    };
    fn value<T: std::str::FromStr>(
        args: &mut impl Iterator<Item = String>,
        flag: &str,
    ) -> anyhow::Result<T> {
        let text = args
            .next()
            .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        text.parse()
            .map_err(|_| anyhow::anyhow!("{flag} {text:?} is not a valid number; {USAGE}"))
    }
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => parsed.port = value(&mut args, "--port")?,
            "--shards" => parsed.shards = value(&mut args, "--shards")?,
            "--on-demand" => parsed.on_demand = true,
            "--kinesis-model" => {
                parsed.latency = Duration::from_millis(20);
                parsed.limits = Some((1_000, 1_048_576));
            }
            "--latency-ms" => {
                parsed.latency = Duration::from_millis(value(&mut args, "--latency-ms")?)
            }
            "--limits" => {
                let text: String = value(&mut args, "--limits")?;
                let (r, b) = text
                    .split_once(',')
                    .and_then(|(r, b)| Some((r.parse().ok()?, b.parse().ok()?)))
                    .with_context(|| {
                        format!("--limits {text:?}: want RECORDS_PER_S,BYTES_PER_S; {USAGE}")
                    })?;
                parsed.limits = Some((r, b));
            }
            other => bail!("bench_sink: unknown argument {other:?}; {USAGE}"),
        }
    }
    if parsed.port == 0 {
        bail!("bench_sink: --port PORT (1-65535) is required; {USAGE}");
    }
    if parsed.shards == 0 {
        bail!("bench_sink: --shards must be at least 1");
    }
    Ok(parsed)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let kinesis = stub::KinesisStub::on_port(args.port, 1);
    kinesis.auto_create_streams(args.shards, args.on_demand);
    kinesis.keep_records(false);
    kinesis.sample_latency_of("lat");
    kinesis.set_latency(args.latency);
    if let Some((records, bytes)) = args.limits {
        kinesis.set_shard_limits(records, bytes);
    }
    eprintln!(
        "bench_sink: serving {} ({} shards{}, {:?} per call, limits {:?})",
        kinesis.endpoint(),
        args.shards,
        if args.on_demand { ", on demand" } else { "" },
        args.latency,
        args.limits
    );
    // The stub serves from its own thread; this one only waits for the signal.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    drop(kinesis);
    Ok(())
}
