//! Credentials from Secrets Manager (moto) against real PostgreSQL: RDS-style JSON
//! secrets, plain-text secrets, rotation while streaming, and that no password ever
//! reaches the log.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::credentials::Credentials;
use pg_cdc_to_kinesis::source;

use crate::support::pg::{self, Pg, SUPERUSER};
use crate::support::{certs, kinesis, moto, process};

fn secrets_client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&moto::shared().sdk_config())
}

async fn create_secret(name: &str, value: &str) {
    secrets_client()
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create secret {name}: {e:?}"));
}

fn rds_secret(user: &str, password: &str, pg: &Pg, db: &str) -> String {
    serde_json::json!({
        "engine": "postgres", "username": user, "password": password,
        "host": "127.0.0.1", "port": pg.port, "dbname": db,
    })
    .to_string()
}

fn write_config(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("configs.yml");
    std::fs::write(&path, yaml).expect("write config");
    path
}

/// A role of its own, so tests can change its password.
fn create_role(pg: &Pg, password: &str) -> String {
    let role = pg::unique_name("rot");
    pg.psql(&format!(
        "CREATE ROLE {role} LOGIN REPLICATION PASSWORD '{password}'"
    ));
    role
}

async fn current_user_via(config: &Path) -> String {
    let config = Config::load(config).unwrap_or_else(|e| panic!("{e}"));
    let creds = Credentials::new(&config.slots[0], &moto::shared().sdk_config());
    let params = creds
        .connect_params()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let client = source::sql_connect(&params)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = client
        .query_one("SELECT current_user::text, current_database()::text", &[])
        .await
        .expect("query");
    format!("{}@{}", row.get::<_, String>(0), row.get::<_, String>(1))
}

#[tokio::test]
async fn an_rds_format_secret_supplies_host_port_user_password_and_database() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("sec_db"));
    let role = create_role(pg, "json-pw-1");
    let name = pg::unique_name("rds_secret");
    create_secret(&name, &rds_secret(&role, "json-pw-1", pg, &db)).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "replication_slots:\n  - s_{role}:\n      secret: {name}\n      kns_stream: unused\n"
        ),
    );
    assert_eq!(current_user_via(&config).await, format!("{role}@{db}"));
}

#[tokio::test]
async fn a_plain_text_secret_is_the_password() {
    let pg = pg::shared();
    let role = create_role(pg, "plain pw 2");
    let name = pg::unique_name("plain_secret");
    create_secret(&name, "plain pw 2").await;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "replication_slots:\n  - s_{role}:\n      host: 127.0.0.1\n      port: {}\n      user: {role}\n      \
             db_name: postgres\n      secret: {name}\n      kns_stream: unused\n",
            pg.port
        ),
    );
    assert_eq!(current_user_via(&config).await, format!("{role}@postgres"));
}

/// `run` with Secrets Manager at moto and Kinesis at kinesalite; stderr collected.
struct Run {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl Run {
    fn start(config: &Path) -> Run {
        let mut cmd = process::command(
            &kinesis::kinesalite().endpoint,
            &["run", "--config", config.to_str().expect("utf-8")],
        );
        cmd.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &moto::shared().endpoint)
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start the binary");
        let log = Arc::new(Mutex::new(String::new()));
        let (pipe, sink) = (child.stderr.take(), log.clone());
        std::thread::spawn(move || {
            let Some(pipe) = pipe else { return };
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Ok(mut log) = sink.lock() {
                    log.push_str(&process::strip_ansi(&line));
                    log.push('\n');
                }
            }
        });
        Run { child, log }
    }
    fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
    fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every integer found under a key `id` anywhere in the record payloads.
fn ids(records: &[kinesis::ReadRecord]) -> BTreeSet<i64> {
    fn walk(v: &serde_json::Value, out: &mut BTreeSet<i64>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v.as_i64()) {
                        ("id", Some(n)) => {
                            out.insert(n);
                        }
                        _ => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = BTreeSet::new();
    for r in records {
        if let Ok(v) = r.json() {
            walk(&v, &mut out);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_while_streaming_reconnects_with_the_new_password_and_loses_nothing() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("rot_db"));
    let table = pg::unique_name("rot_t");
    pg.execute(&db, &format!("CREATE TABLE {table} (id int primary key)"));
    let (old_pw, new_pw) = ("old-Pa55-rotation", "new-Pa55-rotation");
    let role = create_role(pg, old_pw);
    let secret = pg::unique_name("rot_secret");
    create_secret(&secret, &rds_secret(&role, old_pw, pg, &db)).await;
    let stream = kinesis::unique_stream_name("rot");
    let kin = kinesis::kinesalite().client();
    kinesis::create_stream(&kin, &stream, 1).await;
    let slot = pg::unique_name("rot_slot");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(
        dir.path(),
        &format!(
            "replication_slots:\n  - {slot}:\n      secret: {secret}\n      options: {{add-tables: 'public.{table}'}}\n      \
             kns_stream: {stream}\n"
        ),
    );
    let run = Run::start(&config);
    assert!(
        run.wait_for("streaming from", Duration::from_secs(60)),
        "did not start:\n{}",
        run.log()
    );
    let insert = |from: i32, to: i32| {
        pg.execute(
            &db,
            &format!("INSERT INTO {table} SELECT g FROM generate_series({from}, {to}) g"),
        );
    };
    insert(1, 50);
    pg.psql(&format!("ALTER ROLE {role} PASSWORD '{new_pw}'"));
    secrets_client()
        .put_secret_value()
        .secret_id(&secret)
        .secret_string(rds_secret(&role, new_pw, pg, &db))
        .send()
        .await
        .expect("rotate the secret");
    insert(51, 100);
    pg.psql(&format!(
        "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}'"
    ));
    insert(101, 150);
    assert!(
        run.wait_for("fetched the secret again", Duration::from_secs(60)),
        "no refetch after the password changed:\n{}",
        run.log()
    );
    let records = kinesis::read_until(&kin, &stream, 150, Duration::from_secs(60)).await;
    let got = ids(&records);
    let missing: Vec<i64> = (1..=150).filter(|i| !got.contains(i)).collect();
    assert!(missing.is_empty(), "lost ids {missing:?}\n{}", run.log());
    let log = run.log();
    assert!(
        !log.contains(old_pw) && !log.contains(new_pw),
        "a password leaked:\n{log}"
    );
    drop(run);
    pg.psql(&format!("SELECT pg_drop_replication_slot('{slot}')"));
    kinesis::delete_stream(&kin, &stream).await;
}

#[test]
fn no_password_in_the_log_after_a_wrong_password_or_a_failed_handshake() {
    let pg = pg::shared();
    let secret_pw = "Wr0ng-P4ssw0rd-leak-probe";
    let dir = tempfile::tempdir().expect("temp dir");
    let slot = pg::unique_name("leak_slot");
    let wrong_password = format!(
        "replication_slots:\n  - {slot}:\n      host: 127.0.0.1\n      port: {}\n      user: {SUPERUSER}\n      \
         password: '{secret_pw}'\n      db_name: postgres\n      kns_stream: unused\n",
        pg.port
    );
    // A TLS server with another CA: the handshake fails before authentication.
    let server = certs::generate("leak CA", &["localhost"]);
    let tls = certs::tls_cluster(&server);
    let other = certs::generate("not the server's CA", &["localhost"]);
    let real_pw = pg::password_for(SUPERUSER).expect("superuser password");
    let bad_tls = format!(
        "replication_slots:\n  - {slot}:\n      host: localhost\n      port: {}\n      user: {SUPERUSER}\n      \
         password: {real_pw}\n      db_name: postgres\n      kns_stream: unused\n      sslmode: verify-full\n      \
         sslrootcert: {}\n",
        tls.port,
        other.ca.display()
    );
    for (what, yaml, pw, expect) in [
        (
            "wrong password",
            wrong_password,
            secret_pw.to_string(),
            "28P01",
        ),
        ("failed handshake", bad_tls, real_pw.clone(), "not trusted"),
    ] {
        let config = write_config(dir.path(), &yaml);
        let cmd = process::command(
            &kinesis::kinesalite().endpoint,
            &["run", "--config", config.to_str().expect("utf-8")],
        );
        let done = process::run(cmd, Duration::from_secs(60));
        let out = done.describe();
        assert!(
            out.contains(expect),
            "{what}: the failure is not reported:\n{out}"
        );
        assert!(!out.contains(&pw), "{what}: the password leaked:\n{out}");
    }
}
