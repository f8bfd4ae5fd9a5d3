//! moto (the AWS mock server from PyPI) for SSM, Secrets Manager, S3 and CloudWatch tests:
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

/// moto imports a lot of Python on start, and SSM's code on its first SSM request
/// (see [`Moto::load_ssm`]); give each of the two this long on a loaded 2-core machine.
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

    /// Start (again) on the same port, e.g. after [`Moto::stop`], and answer a first
    /// SSM request ([`Moto::load_ssm`]). State is not kept.
    pub fn start_again(&self) -> Result<(), String> {
        let bin = moto_bin();
        if !bin.exists() {
            return Err(format!(
                "{} does not exist: run scripts/install-deps or set MOTO_SERVER_BIN",
                bin.display()
            ));
        }
        let log = self.log_path();
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
        self.load_ssm()
    }

    /// moto loads a service's code on that service's first request, and SSM's takes
    /// seconds of CPU (about 1 s idle, several on a loaded cold machine): longer than
    /// the checkpoint client's 5 s operation timeout allows a test's first read. One
    /// request here, with time to spare, makes that load part of the start.
    fn load_ssm(&self) -> Result<(), String> {
        use std::io::{Read, Write};
        let body = "{}";
        let request = format!(
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Target: AmazonSSM.DescribeParameters\r\n\
             Content-Type: application/x-amz-json-1.1\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=testing/20260101/us-east-1/ssm/aws4_request, SignedHeaders=host, Signature=0\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n{body}",
            port = self.port,
            len = body.len(),
        );
        let log = self.log_path();
        let fail = |e: std::io::Error| {
            format!(
                "moto's first SSM request (given {STARTUP_TIMEOUT:?} to answer): {e} (its log: {})",
                log.display()
            )
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).map_err(fail)?;
        stream
            .set_read_timeout(Some(STARTUP_TIMEOUT))
            .map_err(fail)?;
        stream.write_all(request.as_bytes()).map_err(fail)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).map_err(fail)?;
        if answer.starts_with("HTTP/1.1 200") || answer.starts_with("HTTP/1.0 200") {
            Ok(())
        } else {
            Err(format!(
                "moto's first SSM request was not answered with 200: {}",
                if answer.is_empty() {
                    "(nothing)"
                } else {
                    answer.as_str()
                }
            ))
        }
    }

    /// Where the server's stderr goes.
    fn log_path(&self) -> PathBuf {
        std::env::temp_dir().join(format!("moto-{}.log", self.port))
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
