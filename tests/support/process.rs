//! The `pg-cdc-to-kinesis` binary as a child process: an environment that points it at
//! a local Kinesis endpoint, stderr captured line by line, signals, exit with a
//! deadline, and peak memory (`VmHWM`) from `/proc`.
//!
//! Must never let the binary see the developer's AWS settings (profile, credentials
//! files, instance metadata): every command built here overrides them. A child still
//! running when its handle is dropped is SIGKILLed, so a failed test leaves no
//! streamer behind holding a replication slot.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;

/// How often waits poll the child and its log.
const POLL: Duration = Duration::from_millis(25);

/// The binary cargo built for this test run.
pub const BIN: &str = env!("CARGO_BIN_EXE_pg-cdc-to-kinesis");

/// A command running the binary with `args`, its AWS settings pointing at `endpoint`
/// with throwaway credentials, and logging at the default level.
pub fn command(endpoint: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args(args)
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("NO_COLOR", "1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_ENDPOINT_URL_KINESIS")
        .env_remove("RUST_LOG")
        // libpq's variables fill what a config leaves out: tests name everything.
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .env_remove("PGUSER")
        .env_remove("PGPASSWORD")
        .env_remove("PGDATABASE")
        .env_remove("PGSSLMODE")
        .env_remove("PGSSLROOTCERT")
        .env_remove("PGPASSFILE")
        .stdin(Stdio::null());
    cmd
}

/// What a finished run printed.
#[derive(Debug)]
pub struct Finished {
    /// `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// Both streams, for assertion messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `cmd` to its end; SIGKILLs it and panics if it takes longer than `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Finished {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait_deadline(&mut child, timeout);
    let Some(status) = status else {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "{BIN} did not finish within {timeout:?}; stderr:\n{}",
            join(stderr)
        );
    };
    Finished {
        code: status.code(),
        stdout: join(stdout),
        stderr: join(stderr),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        if let Some(mut pipe) = pipe {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    })
}

fn join(handle: JoinHandle<String>) -> String {
    handle
        .join()
        .unwrap_or_else(|_| "<output reader panicked>".into())
}

fn wait_deadline(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => panic!("waiting for {BIN}: {e}"),
        }
    }
}

/// How long a streamer may take to reach `streaming from` (an initial snapshot's
/// first chunk may come first).
pub const STARTUP: Duration = Duration::from_secs(60);
/// `shutdown_timeout_secs` of the configs the case builder writes.
pub const SHUTDOWN_SECS: u64 = 10;
/// What a Rust panic writes to stderr.
pub const PANIC_TEXT: &str = "panicked at";

/// Asserts that `text` (a log or stderr) shows no panic.
#[track_caller]
pub fn assert_no_panic(what: &str, text: &str) {
    assert!(!text.contains(PANIC_TEXT), "{what} panicked:\n{text}");
}

/// The position a stopped streamer logged as confirmed (`stopped; confirmed <lsn>`);
/// panics with the log if it logged none.
#[track_caller]
pub fn logged_confirmation(log: &str) -> Lsn {
    log.lines()
        .find_map(|l| l.split("stopped; confirmed ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|lsn| Lsn::from_str(lsn).ok())
        .unwrap_or_else(|| panic!("no `stopped; confirmed <lsn>` line:\n{log}"))
}

/// A streamer stopped by [`Streamer::terminate`].
pub struct Stopped {
    pub code: Option<i32>,
    pub took: Duration,
    pub log: String,
}

/// A long-running streamer (`run`) whose stderr is collected as it is written.
pub struct Streamer {
    child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<JoinHandle<()>>,
    /// Highest `VmHWM` seen by [`Streamer::sample_peak_rss_kib`].
    peak_rss_kib: u64,
}

impl Streamer {
    /// Starts `run --config <config>` against `endpoint`.
    pub fn start(endpoint: &str, config: &Path) -> Streamer {
        Self::start_with_env(endpoint, config, &[])
    }

    /// [`Streamer::start`] with extra environment variables (for `${VAR}` in configs).
    pub fn start_with_env(endpoint: &str, config: &Path, env: &[(&str, &str)]) -> Streamer {
        let config = config
            .to_str()
            .unwrap_or_else(|| panic!("config path {config:?} is not UTF-8"));
        let mut cmd = command(endpoint, &["run", "--config", config]);
        cmd.envs(env.iter().copied());
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let log = Arc::new(Mutex::new(String::new()));
        let pipe = child.stderr.take();
        let sink = log.clone();
        let reader = std::thread::spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&line);
                    log.push('\n');
                }
            }
        });
        Streamer {
            child,
            log,
            reader: Some(reader),
            peak_rss_kib: 0,
        }
    }

    /// Starts the streamer and waits until it logs `streaming from`; panics with its
    /// log if it does not within [`STARTUP`].
    pub fn streaming(endpoint: &str, config: &Path) -> Streamer {
        Self::streaming_with_env(endpoint, config, &[])
    }

    /// [`Streamer::streaming`] with extra environment variables.
    pub fn streaming_with_env(endpoint: &str, config: &Path, env: &[(&str, &str)]) -> Streamer {
        let mut streamer = Streamer::start_with_env(endpoint, config, env);
        assert!(
            streamer.wait_for_log("streaming from", STARTUP),
            "the streamer did not start streaming:\n{}",
            streamer.log()
        );
        streamer
    }

    /// SIGTERM, then how it ended: exit code, how long the stop took, and its log.
    pub fn terminate(mut self) -> Stopped {
        let asked = Instant::now();
        self.signal(libc::SIGTERM);
        let status = self.wait_exit(Duration::from_secs(SHUTDOWN_SECS + 20));
        let took = asked.elapsed();
        let log = self.kill();
        Stopped {
            code: status.and_then(|s| s.code()),
            took,
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything it wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log
            .lock()
            .map(|l| l.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Polls the log until it contains `needle`; false when `timeout` passes first
    /// or the process ends without writing it.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return true;
            }
            if Instant::now() >= deadline || self.has_exited() {
                // One more look: the line may have landed just before the exit.
                self.join_reader_if_exited();
                return self.log().contains(needle);
            }
            self.sample_peak_rss_kib();
            std::thread::sleep(POLL);
        }
    }

    fn has_exited(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    fn join_reader_if_exited(&mut self) {
        if self.has_exited() {
            if let Some(reader) = self.reader.take() {
                let _ = reader.join();
            }
        }
    }

    /// Sends `signal` (`libc::SIGTERM`, ...).
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id())
            .unwrap_or_else(|e| panic!("pid out of range: {e}"));
        // SAFETY: kill has no memory preconditions; the pid is our own unreaped child,
        // so it cannot have been recycled for another process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    /// SIGKILL and reap; returns the log.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.finish_log()
    }

    /// Waits for the exit; `None` if it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = wait_deadline(&mut self.child, timeout)?;
        self.join_reader_if_exited();
        Some(status)
    }

    fn finish_log(&mut self) -> String {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.log()
    }

    /// Reads `VmHWM` (peak resident set, KiB) from `/proc/<pid>/status`, remembers
    /// the highest value seen and returns it. The kernel keeps the peak itself, so a
    /// sample just before the process ends sees the whole run.
    pub fn sample_peak_rss_kib(&mut self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let now = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0);
        self.peak_rss_kib = self.peak_rss_kib.max(now);
        self.peak_rss_kib
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        if !self.has_exited() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Removes `ESC [ ... letter` sequences: the log is matched as plain text, whatever
/// the logger decides about colour.
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::strip_ansi;

    #[test]
    fn strip_ansi_keeps_text_and_drops_escapes() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2024\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m hi"),
            "2024  INFO hi"
        );
        assert_eq!(strip_ansi("plain [slot] text"), "plain [slot] text");
    }
}
