//! Helper servers (kinesalite, moto) as child processes that die with the test binary.
//!
//! Owns the one way the harness starts such a server: killed by the kernel when the
//! test process exits (statics are never dropped), reaped if it dies early, and
//! waited for until it accepts TCP connections. Never kills anything it did not start.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Spawn `cmd` and wait until something listens on 127.0.0.1:`port`; its pid.
/// `what` names it in errors, `log` says where its output went.
pub fn spawn_listening(
    mut cmd: Command,
    what: &str,
    port: u16,
    timeout: Duration,
    log: &str,
) -> Result<u32, String> {
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    // PR_SET_PDEATHSIG fires when the *thread* that forked exits, and test threads end
    // with their test; so fork from a thread that lives as long as the process.
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("{what}-{port}"))
        .spawn(move || {
            let spawned = cmd.spawn();
            let _ = tx.send(spawned.as_ref().map(|c| c.id()).map_err(|e| e.to_string()));
            if let Ok(mut child) = spawned {
                // Reaps the child if it dies early; otherwise parks this thread for good.
                let _ = child.wait();
                loop {
                    std::thread::park();
                }
            }
        })
        .map_err(|e| e.to_string())?;
    let pid = rx
        .recv()
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("spawning {what}: {e}"))?;
    let deadline = Instant::now() + timeout;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            return Err(format!(
                "{what} (pid {pid}) did not listen on port {port} within {timeout:?}; log: {log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(pid)
}
