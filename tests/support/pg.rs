//! Throwaway PostgreSQL 15 clusters (with wal2json) for integration tests.
//!
//! Owns starting, restarting and stopping real servers: one shared cluster per test
//! binary ([`shared`]) plus private ones with custom settings ([`Pg::start`]). Servers
//! run as the `postgres` OS user (PostgreSQL refuses root) in a temp dir, on a free
//! port picked at run time, listening on 127.0.0.1 and on a private Unix socket. A
//! watchdog shell stops each cluster and removes its dir when the test process exits,
//! because statics are never dropped. It never mocks anything and never touches a
//! server it did not start.
//!
//! Users (all `LOGIN REPLICATION`; password = `<user>_pw`), each matched by its own
//! pg_hba.conf line so tests can exercise every authentication method:
//! [`SUPERUSER`] (scram, superuser), [`SCRAM_USER`], [`MD5_USER`], [`PASSWORD_USER`]
//! (cleartext) and [`TRUST_USER`] (no password).

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

mod sql;

pub const SUPERUSER: &str = "cdc_admin";
pub const SCRAM_USER: &str = "cdc_scram";
pub const MD5_USER: &str = "cdc_md5";
pub const PASSWORD_USER: &str = "cdc_password";
pub const TRUST_USER: &str = "cdc_trust";

/// Settings every cluster gets; [`PgOptions::set`] entries come later and win.
const BASE_SETTINGS: &[(&str, &str)] = &[
    ("listen_addresses", "'127.0.0.1'"),
    ("wal_level", "logical"),
    ("max_replication_slots", "64"),
    ("max_wal_senders", "64"),
    ("max_connections", "200"),
    ("fsync", "off"),
    ("synchronous_commit", "off"),
    ("full_page_writes", "off"),
    ("shared_buffers", "64MB"),
];

/// The password of one of the test users (`None` for [`TRUST_USER`] and unknown users).
pub fn password_for(user: &str) -> Option<String> {
    [SUPERUSER, SCRAM_USER, MD5_USER, PASSWORD_USER]
        .contains(&user)
        .then(|| format!("{user}_pw"))
}

/// A name no other test in this run uses: `prefix_<pid>_<n>`, lower case so it is a
/// valid slot, table, database and stream name.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}_{}_{}",
        prefix.to_lowercase(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Extra `postgresql.conf` settings for [`Pg::start`].
#[derive(Debug, Clone, Default)]
pub struct PgOptions {
    pub settings: Vec<(String, String)>,
}

impl PgOptions {
    /// Add `name = value` (value as written in postgresql.conf, quotes included).
    pub fn set(mut self, name: &str, value: &str) -> Self {
        self.settings.push((name.to_string(), value.to_string()));
        self
    }
}

/// A running test cluster.
pub struct Pg {
    pub port: u16,
    /// Directory of the Unix socket (usable as a `ConnectParams::host`).
    pub socket_dir: PathBuf,
    dir: PathBuf,
    data: PathBuf,
    log: PathBuf,
    bin: PathBuf,
    /// Private clusters stop and clean up on drop; the shared one via its watchdog.
    owned: bool,
}

/// The cluster shared by all tests of this binary, started on first use. Use unique
/// names (see [`unique_name`]) and never stop or restart it.
pub fn shared() -> &'static Pg {
    static SHARED: OnceLock<Pg> = OnceLock::new();
    SHARED.get_or_init(|| {
        let mut pg = Pg::start(PgOptions::default());
        pg.owned = false;
        pg
    })
}

impl Pg {
    /// The path of PostgreSQL's program `name` (`pg_recvlogical`, ...).
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin.join(name)
    }

    /// Start a private cluster with `opts` on top of the base settings. It is stopped
    /// and removed when dropped (or when the process exits).
    pub fn start(opts: PgOptions) -> Pg {
        let bin = std::env::var_os("PG_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/usr/lib/postgresql/15/bin".into());
        let dir = make_temp_dir();
        let pg = Pg {
            port: 0,
            socket_dir: dir.join("sock"),
            data: dir.join("data"),
            log: dir.join("postgres.log"),
            dir,
            bin,
            owned: false,
        };
        std::fs::create_dir_all(&pg.socket_dir).expect("create socket dir");
        if is_root() {
            run(Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&pg.dir));
        }
        spawn_watchdog(&pg);
        let mut initdb = pg.as_postgres(&pg.bin.join("initdb"));
        run(initdb.arg("-D").arg(&pg.data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]));
        write_hba(&pg.data.join("pg_hba.conf"));

        let mut last_err = String::new();
        for _ in 0..5 {
            let mut pg = pg.with_port(free_port());
            pg.write_conf(&opts);
            match pg.try_ctl(&["start", "-w", "-t", "60"]) {
                Ok(()) => {
                    pg.owned = true;
                    pg.create_users();
                    return pg;
                }
                // Most likely someone took the port between our probe and the bind.
                Err(e) => last_err = format!("{e}\n--- server log ---\n{}", pg.log_tail()),
            }
        }
        panic!("PostgreSQL did not start: {last_err}");
    }

    fn with_port(&self, port: u16) -> Pg {
        Pg {
            port,
            socket_dir: self.socket_dir.clone(),
            dir: self.dir.clone(),
            data: self.data.clone(),
            log: self.log.clone(),
            bin: self.bin.clone(),
            owned: self.owned,
        }
    }

    fn write_conf(&self, opts: &PgOptions) {
        let mut conf = String::from("\n# pg_cdc_to_kinesis tests\n");
        conf += &format!(
            "port = {}\nunix_socket_directories = '{}'\n",
            self.port,
            self.socket_dir.display()
        );
        let base = BASE_SETTINGS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()));
        for (k, v) in base.chain(opts.settings.iter().cloned()) {
            conf += &format!("{k} = {v}\n");
        }
        // postgresql.auto.conf is read last and is ours alone: rewriting it on a
        // port retry replaces the previous attempt's settings.
        std::fs::write(self.data.join("postgresql.auto.conf"), conf)
            .expect("write postgresql.auto.conf");
        if is_root() {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(self.data.join("postgresql.auto.conf")));
        }
    }

    fn create_users(&self) {
        let mut sql = format!(
            "CREATE ROLE {SUPERUSER} SUPERUSER LOGIN REPLICATION PASSWORD '{SUPERUSER}_pw';\n"
        );
        sql += &format!("CREATE ROLE {SCRAM_USER} LOGIN REPLICATION PASSWORD '{SCRAM_USER}_pw';\n");
        sql += &format!("SET password_encryption = 'md5';\nCREATE ROLE {MD5_USER} LOGIN REPLICATION PASSWORD '{MD5_USER}_pw';\nRESET password_encryption;\n");
        sql += &format!(
            "CREATE ROLE {PASSWORD_USER} LOGIN REPLICATION PASSWORD '{PASSWORD_USER}_pw';\n"
        );
        sql += &format!("CREATE ROLE {TRUST_USER} LOGIN REPLICATION;\n");
        self.psql(&sql);
    }

    /// `pg_ctl restart -m fast` (clients are disconnected, slots survive). Blocks until
    /// the server is back. A fast shutdown waits for each logical walsender's client to
    /// confirm what it was sent (up to `wal_sender_timeout`), so while a replication
    /// client is streaming, call this from `spawn_blocking` and keep the client
    /// answering keepalives.
    pub fn restart_fast(&self) {
        self.ctl(&["restart", "-m", "fast", "-w", "-t", "60"]);
    }

    /// `pg_ctl stop -m immediate`: a crash, as far as clients can tell.
    pub fn stop_immediate(&self) {
        self.ctl(&["stop", "-m", "immediate", "-w"]);
    }

    /// Start again after [`Pg::stop_immediate`] (runs crash recovery).
    pub fn start_again(&self) {
        self.ctl(&["start", "-w", "-t", "60"]);
    }

    /// The end of the server log, for assertion messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    fn ctl(&self, args: &[&str]) {
        if let Err(e) = self.try_ctl(args) {
            panic!("{e}\n--- server log ---\n{}", self.log_tail());
        }
    }

    fn try_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = self.as_postgres(&self.bin.join("pg_ctl"));
        cmd.arg("-D")
            .arg(&self.data)
            .arg("-l")
            .arg(&self.log)
            .args(args);
        let out = cmd
            .output()
            .map_err(|e| format!("cannot run pg_ctl: {e}"))?;
        check(&out).map_err(|e| format!("pg_ctl {args:?} failed: {e}"))
    }

    /// A command that runs `program` as the `postgres` OS user.
    fn as_postgres(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        if self.owned {
            let _ = self.try_ctl(&["stop", "-m", "immediate", "-w"]);
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn write_hba(path: &Path) {
    let mut hba = String::from("local all all trust\n");
    for (user, method) in [
        (SCRAM_USER, "scram-sha-256"),
        (MD5_USER, "md5"),
        (PASSWORD_USER, "password"),
        (TRUST_USER, "trust"),
    ] {
        hba += &format!("host all {user} 127.0.0.1/32 {method}\nhost replication {user} 127.0.0.1/32 {method}\n");
    }
    hba += "host all all 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 scram-sha-256\n";
    std::fs::write(path, hba).expect("write pg_hba.conf");
}

/// Stop the cluster and remove its dir once this test process is gone. Its own
/// process group, so a Ctrl-C aimed at the test run does not kill it first.
fn spawn_watchdog(pg: &Pg) {
    use std::os::unix::process::CommandExt;
    let pg_ctl = pg.bin.join("pg_ctl");
    let stop = if is_root() {
        "runuser -u postgres -- \"$2\""
    } else {
        "\"$2\""
    };
    let script = format!(
        "while kill -0 \"$1\" 2>/dev/null; do sleep 0.5; done; {stop} -D \"$3\" stop -m immediate -w >/dev/null 2>&1; rm -rf \"$4\""
    );
    let spawned = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pg-watchdog")
        .arg(std::process::id().to_string())
        .arg(pg_ctl)
        .arg(&pg.data)
        .arg(&pg.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn();
    if let Err(e) = spawned {
        eprintln!(
            "warning: cannot start the PostgreSQL watchdog ({e}); {} may outlive the tests",
            pg.dir.display()
        );
    }
}

fn make_temp_dir() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "pgcdc-test-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir for PostgreSQL");
    dir
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe port");
    listener.local_addr().expect("probe port address").port()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    if let Err(e) = check(&out) {
        panic!("{cmd:?} failed: {e}");
    }
}

fn check(out: &Output) -> Result<(), String> {
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
