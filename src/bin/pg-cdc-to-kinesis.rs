//! The streamer's command line: parse arguments, load the config, start logging,
//! call the library. SIGTERM/SIGINT stop, SIGHUP reads the config again. Exit codes: 0 done, 1 failed (no slot left running, a check
//! failed), 2 the config or the command line is wrong.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::telemetry::{self, LogFormat};
use pg_cdc_to_kinesis::{check, run, tail};

/// mimalloc (see `pg_cdc_to_kinesis::alloc`).
#[global_allocator]
static ALLOCATOR: pg_cdc_to_kinesis::alloc::Mimalloc = pg_cdc_to_kinesis::alloc::Mimalloc;

#[derive(Parser)]
#[command(
    version,
    about = "Stream PostgreSQL changes (wal2json) into AWS Kinesis Data Streams"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The config file.
    #[arg(long, global = true, default_value = "configs.yml")]
    config: PathBuf,
    /// Log format: text for people, json for CloudWatch, console for the original
    /// tool's progress lines only (warnings and errors as plain lines on stderr).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Subcommand)]
enum Command {
    /// Stream every configured slot to its Kinesis stream (the default).
    Run,
    /// Check every slot's database, wal2json, slot and stream, and print a table.
    Check,
    /// Print each slot's state on the server: active, lag, wal_status, checkpoint.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running streamer to put tables' existing rows on the stream. Writes
    /// a signal into the slot's database; the streamer backfills while streaming.
    Backfill {
        /// The slot whose streamer backfills.
        #[arg(long)]
        slot: String,
        /// A table to backfill (schema.table); repeat for more.
        #[arg(long = "table", required = true)]
        tables: Vec<String>,
        /// Only rows matching this SQL condition, e.g. "created_at > '2026-01-01'".
        #[arg(long = "where")]
        filter: Option<String>,
    },
    /// Print the records of a Kinesis stream, shard by shard, until every shard was
    /// read to its end (or on and on with --follow).
    Tail {
        /// The stream's name.
        #[arg(long)]
        stream: String,
        /// Start from the oldest record instead of new ones.
        #[arg(long)]
        from_start: bool,
        /// Stop after this many records (a KPL aggregate counts as its user records).
        #[arg(long)]
        limit: Option<usize>,
        /// Keep waiting for new records after reaching the end of every shard.
        #[arg(long, conflicts_with = "ordered")]
        follow: bool,
        /// Stop after this many seconds (e.g. 10 or 0.5), whatever else.
        #[arg(long, value_parser = parse_seconds)]
        timeout: Option<std::time::Duration>,
        /// Print what was read sorted by (commit_lsn, seq), the order of the changes in
        /// the database, instead of shard by shard.
        #[arg(long)]
        ordered: bool,
        /// How to print each record.
        #[arg(long, value_enum, default_value_t = tail::Format::Json)]
        format: tail::Format,
        /// The Debezium envelope's source.name (default: the stream's name).
        #[arg(long)]
        slot: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async_main(cli))
}

async fn async_main(cli: Cli) -> ExitCode {
    let command = cli.command.unwrap_or(Command::Run);
    // The config first: a config error is reported at once, before any AWS lookup.
    let config = match command {
        Command::Run | Command::Check | Command::Status { .. } | Command::Backfill { .. } => {
            match load(&cli.config, cli.log_format) {
                Some(config) => Some(config),
                None => return ExitCode::from(2),
            }
        }
        Command::Tail { .. } => None,
    };
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    match (command, config) {
        (Command::Run, Some(config)) => {
            let env = run::RunEnv { aws };
            let reloads = reload_on_sighup(cli.config.clone(), cli.log_format);
            match run::run_with_reloads(&config, &env, shutdown_signal(), reloads).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!("{e}");
                    ExitCode::from(1)
                }
            }
        }
        (Command::Check, Some(config)) => {
            run::note_memory_floor(&config);
            let rows = check::check(&config, &aws).await;
            print!("{}", check::render(&rows));
            if rows.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        (Command::Status { json }, Some(config)) => {
            let rows = pg_cdc_to_kinesis::status::status(&config, &aws).await;
            if json {
                print!("{}", pg_cdc_to_kinesis::status::render_json(&rows));
            } else {
                print!("{}", pg_cdc_to_kinesis::status::render(&rows));
            }
            if rows.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        (
            Command::Backfill {
                slot,
                tables,
                filter,
            },
            Some(config),
        ) => {
            let report =
                pg_cdc_to_kinesis::admin::backfill(&config, &aws, &slot, tables, filter).await;
            match (&report.sent, &report.error) {
                (Some(sent), _) => {
                    println!("backfill signalled to slot {} at {}: the running streamer starts it when it reaches that position", sent.slot, sent.lsn);
                    ExitCode::SUCCESS
                }
                (None, Some(e)) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
                (None, None) => ExitCode::from(1),
            }
        }
        (
            Command::Run | Command::Check | Command::Status { .. } | Command::Backfill { .. },
            None,
        ) => ExitCode::from(2),
        (
            Command::Tail {
                stream,
                from_start,
                limit,
                follow,
                timeout,
                ordered,
                format,
                slot,
            },
            _,
        ) => {
            let client = aws_sdk_kinesis::Client::new(&aws);
            let opts = tail::TailOptions {
                from_start,
                limit,
                follow,
                timeout,
                ordered,
                format,
                name: slot.unwrap_or_else(|| stream.clone()),
            };
            let (mut stdout, mut stderr) = (std::io::stdout(), std::io::stderr());
            match tail::tail(&client, &stream, &opts, &mut stdout, &mut stderr).await {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `--timeout`: seconds, whole or not.
fn parse_seconds(text: &str) -> Result<std::time::Duration, String> {
    text.trim()
        .trim_end_matches('s')
        .parse::<f64>()
        .ok()
        .and_then(|s| std::time::Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds (e.g. 10 or 0.5)"))
}

fn load(path: &std::path::Path, format: LogFormat) -> Option<Config> {
    match Config::load(path) {
        Ok(config) => Some(config),
        // Under `json` every stderr line is a JSON log line, this one included.
        Err(e) if format == LogFormat::Json => {
            tracing::error!(config = %path.display(), "{e}");
            None
        }
        Err(e) => {
            eprintln!("error: {e}");
            None
        }
    }
}

/// Each SIGHUP reads the config file again; a valid one is sent to the pipeline, an
/// invalid one is logged (file:line:col and the fix) and changes nothing.
fn reload_on_sighup(path: PathBuf, format: LogFormat) -> tokio::sync::mpsc::Receiver<Config> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        // Installed before any slot starts: SIGHUP's default action ends the process.
        match signal(SignalKind::hangup()) {
            Ok(mut hup) => {
                tokio::spawn(async move {
                    while hup.recv().await.is_some() {
                        tracing::info!(config = %path.display(), "SIGHUP: reading {} again", path.display());
                        match Config::load(&path) {
                            Ok(config) => {
                                if tx.send(config).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) if format == LogFormat::Json => {
                                tracing::error!(config = %path.display(), "{e}; the running slots are left as they are")
                            }
                            Err(e) => {
                                tracing::error!("{e}; the running slots are left as they are")
                            }
                        }
                    }
                });
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGHUP ({e}): the config is read at start only")
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (path, format, tx);
    rx
}

/// SIGTERM (ECS stopping the task) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
