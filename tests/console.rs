//! `--log-format console`: the original Python tool's lines, byte for byte, from the
//! real process streaming real changes (PostgreSQL and kinesalite). The progress lines
//! go to stdout exactly as the tool printed them; nothing else does (with
//! `metrics_emf: false`: EMF metric lines are stdout's other, opt-out, use).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::kinesis;
use crate::support::pg::{self, SUPERUSER};
use crate::support::process;

const WAIT: Duration = Duration::from_secs(60);

/// Reads `pipe` line by line into a shared string.
fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut t = sink.lock().expect("lock");
            t.push_str(&line);
            t.push('\n');
        }
    });
    text
}

/// `[slot] Sending changes to Kinesis: i of n chunks. (Queue length: q)` → (i, n, q),
/// only when the line is exactly that.
fn sending(line: &str, slot: &str) -> Option<(u64, u64, u64)> {
    let rest = line.strip_prefix(&format!("[{slot}] Sending changes to Kinesis: "))?;
    let (i, rest) = rest.split_once(" of ")?;
    let (n, rest) = rest.split_once(" chunks. (Queue length: ")?;
    let q = rest.strip_suffix(')')?;
    let (i, n, q) = (i.parse().ok()?, n.parse().ok()?, q.parse().ok()?);
    (line == format!("[{slot}] Sending changes to Kinesis: {i} of {n} chunks. (Queue length: {q})"))
        .then_some((i, n, q))
}

fn waiting(line: &str, slot: &str) -> Option<u64> {
    let q = line
        .strip_prefix(&format!(
            "[{slot}] Waiting records to process. (Queue length: "
        ))?
        .strip_suffix(')')?;
    let q: u64 = q.parse().ok()?;
    (line == format!("[{slot}] Waiting records to process. (Queue length: {q})")).then_some(q)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_format_prints_only_the_original_tools_lines_byte_for_byte() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("console_db"));
    let table = pg::unique_name("console_t");
    pg.execute(
        &db,
        &format!("CREATE TABLE {table} (id int PRIMARY KEY, v text);"),
    );
    let slot = pg::unique_name("console_slot");
    let stream = kinesis::unique_stream_name("console");
    let client = kinesis::kinesalite().client();
    kinesis::create_stream(&client, &stream, 2).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("configs.yml");
    std::fs::write(
        &config,
        format!(
            "http_listen: 127.0.0.1:0\nmetrics_emf: false\nreplication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      \
             port: {}\n      user: {SUPERUSER}\n      password: {SUPERUSER}_pw\n      db_name: {db}\n      \
             options: {{add-tables: 'public.{table}'}}\n      kns_stream: {stream}\n      \
             checkpoint: false\n      batch_max_records: 50\n",
            pg.port
        ),
    )
    .expect("write config");
    let config = config.to_string_lossy().into_owned();
    let mut cmd = process::command(
        &kinesis::kinesalite().endpoint,
        &["run", "--config", &config, "--log-format", "console"],
    );
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start the streamer");
    let stdout = collect(child.stdout.take().expect("stdout"));
    let stderr = collect(child.stderr.take().expect("stderr"));
    let text = |t: &Arc<Mutex<String>>| t.lock().expect("lock").clone();
    let wait_for = |what: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if what(&text(&stdout)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    };

    let idle = format!("[{slot}] Waiting records to process. (Queue length: 0)\n");
    assert!(
        wait_for(&|out| out.starts_with(&idle)),
        "the first line is the idle line:\n{}\n--- stderr ---\n{}",
        text(&stdout),
        text(&stderr)
    );
    // Wait for the slot to be streaming (the idle line comes from the sink, which may
    // start first), then write changes.
    let deadline = Instant::now() + WAIT;
    while pg.psql(&format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active"
    )) != "1"
    {
        assert!(Instant::now() < deadline, "the slot never became active");
        std::thread::sleep(Duration::from_millis(100));
    }
    pg.execute(
        &db,
        &format!("INSERT INTO {table} SELECT g, 'v' || g FROM generate_series(1, 2000) g;"),
    );
    let sent_then_idle = |out: &str| {
        let lines: Vec<&str> = out.lines().collect();
        lines
            .iter()
            .position(|l| sending(l, &slot).is_some())
            .is_some_and(|at| lines[at..].iter().any(|l| waiting(l, &slot).is_some()))
    };
    assert!(
        wait_for(&sent_then_idle),
        "no Sending line followed by a Waiting line:\n{}\n--- stderr ---\n{}",
        text(&stdout),
        text(&stderr)
    );
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = child.wait().expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    let out = text(&stdout);
    let err = text(&stderr);
    assert_eq!(status.code(), Some(0), "{out}\n--- stderr ---\n{err}");

    // Every stdout line is one of the two lines, exactly; i never exceeds n.
    for line in out.lines() {
        match (sending(line, &slot), waiting(line, &slot)) {
            (Some((i, n, _)), None) => assert!(1 <= i && i <= n, "{line}"),
            (None, Some(_)) => {}
            _ => panic!("not one of the original tool's lines: {line:?}\n{out}"),
        }
    }
    // No timestamps, levels or info lines anywhere; stderr holds warnings and errors only.
    for line in err.lines() {
        let bare = line.strip_prefix(&format!("[{slot}] ")).unwrap_or(line);
        assert!(
            bare.starts_with("warning: ") || bare.starts_with("error: "),
            "stderr line is not a plain warning or error: {line:?}"
        );
    }
    assert!(
        !err.contains("streaming from") && !out.contains("INFO"),
        "{err}"
    );

    pg.execute(
        "postgres",
        &format!("SELECT pg_drop_replication_slot('{slot}');"),
    );
    kinesis::delete_stream(&client, &stream).await;
    pg.execute("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE);"));
}
