//! moto (the AWS mock server from PyPI) for SSM, Secrets Manager and CloudWatch tests:
//! one shared server per test binary, or a private one a test may stop and start
//! again (an outage). Installed by `scripts/install-deps` into `.tools/venv`.
//!
//! Must never touch real AWS: configs built here carry the moto endpoint and static
//! throwaway credentials, and nothing reads the environment's AWS settings.
#![allow(dead_code)]

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_config::SdkConfig;

use super::kinesis::{free_port, sdk_config};

/// moto imports a lot of Python on start; give it time on a loaded 2-core machine.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running (or stopped) moto server on a fixed port.
#[derive(Debug)]
pub struct Moto {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    pub port: u16,
    pid: Mutex<Option<u32>>,
}

/// The moto shared by every test in this binary. Never stop it: use [`Moto::start`]
/// for a private one.
pub fn shared() -> &'static Moto {
    static SERVER: OnceLock<Moto> = OnceLock::new();
    SERVER.get_or_init(|| {
        let mut last = String::new();
        for _ in 0..3 {
            match Moto::start() {
                Ok(m) => return m,
                Err(e) => last = e,
            }
        }
        panic!("could not start moto: {last}")
    })
}

fn moto_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MOTO_SERVER_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/moto_server")
}

impl Moto {
    /// A private moto on a free port; killed when dropped or when the test process exits.
    pub fn start() -> Result<Moto, String> {
        let port = free_port();
        let moto = Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            port,
            pid: Mutex::new(None),
        };
        moto.start_again()?;
        Ok(moto)
    }

    /// Start (again) on the same port, e.g. after [`Moto::stop`]. State is not kept.
    pub fn start_again(&self) -> Result<(), String> {
        let bin = moto_bin();
        if !bin.exists() {
            return Err(format!(
                "{} does not exist: run scripts/install-deps or set MOTO_SERVER_BIN",
                bin.display()
            ));
        }
        let log = std::env::temp_dir().join(format!("moto-{}.log", self.port));
        let log_file =
            std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file);
        let pid = super::daemon::spawn_listening(
            cmd,
            "moto",
            self.port,
            STARTUP_TIMEOUT,
            &log.display().to_string(),
        )?;
        *self.pid.lock().unwrap_or_else(|e| e.into_inner()) = Some(pid);
        Ok(())
    }

    /// Kill it (an outage). Requests fail with connection refused until [`Moto::start_again`].
    pub fn stop(&self) {
        if let Some(pid) = self.pid.lock().unwrap_or_else(|e| e.into_inner()).take() {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline
            {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// An SDK config for this server (static test credentials, us-east-1).
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config(&self.endpoint)
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
