//! The replication source against a real PostgreSQL 15 + wal2json: authentication
//! methods, streaming, acknowledgement, option quoting and error classification.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::{
    create_slot, current_wal_lsn, slot_info, sql_connect, wal_level, ConnectParams,
    ReplicationMessage, ReplicationStream, SourceError,
};
use tokio::time::timeout;

use crate::support::pg::{self, Pg, PgOptions};

const WAIT: Duration = Duration::from_secs(30);

/// One test's database, table and slot, cleaned up by [`Case::cleanup`].
struct Case<'a> {
    pg: &'a Pg,
    db: String,
    slot: String,
    table: String,
}

impl<'a> Case<'a> {
    /// A fresh database with table `t_...(id int primary key, note text)` and a
    /// wal2json slot created by `user` through [`create_slot`].
    async fn new(pg: &'a Pg, user: &str) -> Case<'a> {
        let db = pg.create_database(&pg::unique_name("src_db"));
        let table = pg::unique_name("t");
        pg.execute(
            &db,
            &format!("CREATE TABLE {table} (id int primary key, note text);"),
        );
        let slot = pg::unique_name("src_slot");
        let client = sql_connect(&pg.connect_params(user, &db))
            .await
            .expect("sql_connect");
        let lsn = create_slot(&client, &slot).await.expect("create_slot");
        assert!(lsn > Lsn::ZERO);
        Case {
            pg,
            db,
            slot,
            table,
        }
    }

    fn params(&self, user: &str) -> ConnectParams {
        self.pg.connect_params(user, &self.db)
    }

    async fn stream(&self, user: &str, options: &[(&str, &str)]) -> ReplicationStream {
        let mut stream = ReplicationStream::connect(&self.params(user))
            .await
            .expect("connect");
        let options: Vec<(String, String)> = options
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        stream
            .start(&self.slot, Lsn::ZERO, &options)
            .await
            .expect("start");
        stream
    }

    fn insert(&self, id: i32, note: &str) {
        self.pg.execute(
            &self.db,
            &format!("INSERT INTO {} VALUES ({id}, '{note}');", self.table),
        );
    }

    fn cleanup(self) {
        let slot = &self.slot;
        let deadline = Instant::now() + WAIT;
        loop {
            self.pg.psql(&format!(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name = '{slot}' AND active_pid IS NOT NULL;"
            ));
            match self.pg.try_psql_in(
                "postgres",
                &format!("SELECT pg_drop_replication_slot('{slot}');"),
            ) {
                Ok(_) => break,
                // Still active: the walsender is on its way out.
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100))
                }
                Err(e) => panic!("cannot drop slot {slot}: {e}"),
            }
        }
        self.pg
            .psql(&format!("DROP DATABASE \"{}\" WITH (FORCE);", self.db));
    }
}

/// Receive until an XLogData payload contains `needle`; answers keepalives that ask.
async fn recv_containing(stream: &mut ReplicationStream, needle: &str) -> (Lsn, Lsn, String) {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = timeout(left, stream.recv())
            .await
            .unwrap_or_else(|_| panic!("no XLogData with {needle:?} within {WAIT:?}"));
        match msg.expect("recv") {
            ReplicationMessage::XLogData {
                wal_start,
                wal_end,
                data,
            } => {
                let text = String::from_utf8(data.to_vec()).expect("wal2json output is UTF-8");
                if text.contains(needle) {
                    return (wal_start, wal_end, text);
                }
            }
            ReplicationMessage::Keepalive {
                reply_requested: true,
                ..
            } => {
                stream
                    .send_status(Lsn::ZERO, false)
                    .await
                    .expect("send_status");
            }
            ReplicationMessage::Keepalive { .. } => {}
        }
    }
}

async fn streams_a_row_as(user: &str) {
    let pg = pg::shared();
    let case = Case::new(pg, user).await;
    let mut stream = case.stream(user, &[]).await;
    assert!(stream.backend_pid().is_some());
    case.insert(1, &format!("hello from {user}"));
    let (_, _, text) = recv_containing(&mut stream, &format!("hello from {user}")).await;
    assert!(text.contains(&case.table), "{text}");
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn scram_user_connects_and_streams() {
    streams_a_row_as(pg::SCRAM_USER).await;
}

#[tokio::test]
async fn md5_user_connects_and_streams() {
    streams_a_row_as(pg::MD5_USER).await;
}

#[tokio::test]
async fn cleartext_password_user_connects_and_streams() {
    streams_a_row_as(pg::PASSWORD_USER).await;
}

#[tokio::test]
async fn trust_user_connects_and_streams() {
    streams_a_row_as(pg::TRUST_USER).await;
}

#[tokio::test]
async fn connects_over_unix_socket() {
    let pg = pg::shared();
    let mut params = pg.connect_params(pg::TRUST_USER, "postgres");
    params.host = pg.socket_dir.display().to_string();
    let stream = ReplicationStream::connect(&params)
        .await
        .expect("connect over the Unix socket");
    assert!(stream.backend_pid().is_some());
}

#[tokio::test]
async fn keepalives_arrive_and_status_advances_confirmed_flush() {
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    let client = sql_connect(&case.params(pg::SUPERUSER))
        .await
        .expect("sql_connect");
    let before = slot_info(&client, &case.slot)
        .await
        .unwrap()
        .expect("slot exists");
    assert_eq!(before.plugin.as_deref(), Some("wal2json"));

    let mut stream = case
        .stream(pg::SCRAM_USER, &[("include-lsn", "true")])
        .await;
    case.insert(1, "ack me");
    // A v1 message's header carries the transaction's first LSN; its commit end (the
    // position to confirm once delivered) is the JSON "nextlsn".
    let (header, _, text) = recv_containing(&mut stream, "ack me").await;
    let json: serde_json::Value = serde_json::from_str(&text).expect("wal2json JSON");
    let commit_end: Lsn = json["nextlsn"]
        .as_str()
        .expect("nextlsn")
        .parse()
        .expect("an LSN");
    assert!(
        header < commit_end,
        "header {header} vs commit end {commit_end}"
    );
    // The walsender pings once it has caught up and we have not confirmed what it sent.
    let keepalive_end = loop {
        match timeout(WAIT, stream.recv())
            .await
            .expect("a keepalive within 30s")
            .expect("recv")
        {
            ReplicationMessage::Keepalive { wal_end, .. } => break wal_end,
            ReplicationMessage::XLogData { .. } => {}
        }
    };
    assert!(
        keepalive_end >= commit_end,
        "keepalive {keepalive_end} before commit end {commit_end}"
    );

    let info = slot_info(&client, &case.slot).await.unwrap().unwrap();
    assert!(
        info.active && info.active_pid == stream.backend_pid(),
        "{info:?}"
    );
    assert!(
        info.confirmed_flush_lsn < Some(commit_end),
        "{info:?} already at {commit_end}"
    );

    stream
        .send_status(commit_end, false)
        .await
        .expect("send_status");
    let deadline = Instant::now() + WAIT;
    loop {
        let info = slot_info(&client, &case.slot).await.unwrap().unwrap();
        if info.confirmed_flush_lsn == Some(commit_end) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "confirmed_flush_lsn never reached {commit_end}: {info:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn option_values_with_quotes_reach_wal2json_intact() {
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    let quoted = format!("it's_{}", case.table);
    pg.execute(
        &case.db,
        &format!("CREATE TABLE \"{quoted}\" (id int primary key);"),
    );
    let add_tables = format!("public.{quoted}");
    let mut stream = case
        .stream(
            pg::SCRAM_USER,
            &[("add-tables", &add_tables), ("format-version", "2")],
        )
        .await;
    case.insert(1, "filtered out");
    pg.execute(
        &case.db,
        &format!(
            "INSERT INTO \"{}\" VALUES (42);",
            quoted.replace('"', "\"\"")
        ),
    );
    let (_, _, text) = recv_containing(&mut stream, "\"action\":\"I\"").await;
    assert!(
        text.contains(&quoted) && text.contains("42"),
        "only the quoted table passes the filter: {text}"
    );
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn unknown_option_is_a_permanent_server_error() {
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    let mut stream = ReplicationStream::connect(&case.params(pg::SCRAM_USER))
        .await
        .unwrap();
    let err = stream
        .start(
            &case.slot,
            Lsn::ZERO,
            &[("No-Such Option".into(), "it's".into())],
        )
        .await
        .unwrap_err();
    // wal2json names the option it got: case, spaces and the quote survive quoting.
    assert!(
        err.to_string()
            .contains("option \"No-Such Option\" = \"it's\" is unknown"),
        "{err}"
    );
    assert_eq!(err.sqlstate(), Some("22023"), "{err}");
    assert!(!err.is_transient(), "{err}");
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn wrong_password_is_a_clear_permanent_error() {
    let pg = pg::shared();
    let mut params = pg.connect_params(pg::SCRAM_USER, "postgres");
    params.password = Some(pg_cdc_to_kinesis::config::Secret::new("wrong"));
    let err = ReplicationStream::connect(&params)
        .await
        .expect_err("must fail");
    let text = err.to_string();
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{}", pg.port)),
        "names the server: {text}"
    );
    assert!(!text.contains("wrong"), "never shows the password: {text}");
    assert_eq!(err.sqlstate(), Some("28P01"));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn missing_password_and_missing_database_are_permanent() {
    let pg = pg::shared();
    let mut params = pg.connect_params(pg::MD5_USER, "postgres");
    params.password = None;
    let err = ReplicationStream::connect(&params)
        .await
        .expect_err("must fail");
    assert!(
        matches!(err, SourceError::Auth { .. }) && !err.is_transient(),
        "{err}"
    );
    assert!(err.to_string().contains("none is configured"), "{err}");

    let params = pg.connect_params(pg::SCRAM_USER, "no_such_db_here");
    let err = ReplicationStream::connect(&params)
        .await
        .expect_err("must fail");
    assert_eq!(err.sqlstate(), Some("3D000"), "{err}");
    assert!(!err.is_transient(), "{err}");
}

#[tokio::test]
async fn missing_slot_is_a_clear_permanent_error() {
    let pg = pg::shared();
    let mut stream = ReplicationStream::connect(&pg.connect_params(pg::SCRAM_USER, "postgres"))
        .await
        .unwrap();
    let slot = pg::unique_name("absent_slot");
    let err = stream.start(&slot, Lsn::ZERO, &[]).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&slot) && text.contains("does not exist"),
        "{text}"
    );
    assert_eq!(err.sqlstate(), Some("42704"));
    assert!(!err.is_transient());
}

#[tokio::test]
async fn slot_in_use_elsewhere_is_transient() {
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    let _first = case.stream(pg::SCRAM_USER, &[]).await;
    let mut second = ReplicationStream::connect(&case.params(pg::SCRAM_USER))
        .await
        .unwrap();
    let err = second.start(&case.slot, Lsn::ZERO, &[]).await.unwrap_err();
    assert_eq!(err.sqlstate(), Some("55006"), "{err}");
    assert!(err.is_transient(), "{err}");
    drop((_first, second));
    case.cleanup();
}

#[tokio::test]
async fn terminated_walsender_is_transient() {
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    let mut stream = case.stream(pg::SCRAM_USER, &[]).await;
    let pid = stream.backend_pid().expect("backend pid");
    pg.psql(&format!("SELECT pg_terminate_backend({pid});"));
    let err = loop {
        match timeout(WAIT, stream.recv())
            .await
            .expect("an error within 30s")
        {
            Ok(_) => continue,
            Err(e) => break e,
        }
    };
    assert!(err.is_transient(), "{err}");
    case.cleanup();
}

#[tokio::test]
async fn answering_reply_requests_keeps_the_stream_alive() {
    // wal_sender_timeout 2s: the server asks for a reply after 1s of silence and
    // would drop us after 2s without one.
    let private = Pg::start(PgOptions::default().set("wal_sender_timeout", "'2s'"));
    let case = Case::new(&private, pg::SCRAM_USER).await;
    let mut stream = case.stream(pg::SCRAM_USER, &[]).await;
    let until = Instant::now() + Duration::from_secs(5);
    let mut requests = 0;
    while Instant::now() < until {
        let msg = timeout(WAIT, stream.recv())
            .await
            .expect("a message")
            .expect("the stream stays up");
        if let ReplicationMessage::Keepalive {
            wal_end,
            reply_requested: true,
        } = msg
        {
            requests += 1;
            stream.send_status(wal_end, false).await.unwrap();
        }
    }
    assert!(
        requests >= 2,
        "expected reply requests every second, got {requests}"
    );
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn streams_many_rows_quickly() {
    const ROWS: i64 = 100_000;
    let pg = pg::shared();
    let case = Case::new(pg, pg::SCRAM_USER).await;
    pg.execute(
        &case.db,
        &format!(
            "INSERT INTO {} SELECT g, 'row ' || g FROM generate_series(1, {ROWS}) g;",
            case.table
        ),
    );
    let mut stream = case
        .stream(pg::SCRAM_USER, &[("format-version", "2")])
        .await;
    let started = Instant::now();
    let (mut rows, mut bytes) = (0i64, 0usize);
    while rows < ROWS {
        match timeout(WAIT, stream.recv())
            .await
            .expect("rows keep coming")
            .expect("recv")
        {
            ReplicationMessage::XLogData { data, .. } => {
                bytes += data.len();
                rows += i64::from(data.windows(12).any(|w| w == b"\"action\":\"I\""));
            }
            ReplicationMessage::Keepalive { .. } => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "streamed {rows} rows ({bytes} bytes) in {secs:.2}s: {:.0} rows/s",
        rows as f64 / secs
    );
    drop(stream);
    case.cleanup();
}

#[tokio::test]
async fn nothing_listening_is_transient() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut params = pg::shared().connect_params(pg::SCRAM_USER, "postgres");
    params.port = port;
    let err = ReplicationStream::connect(&params)
        .await
        .expect_err("nothing listens there");
    assert!(
        matches!(err, SourceError::Connect { .. }) && err.is_transient(),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
    let err = sql_connect(&params)
        .await
        .expect_err("nothing listens there");
    assert!(err.is_transient(), "{err}");
}

#[tokio::test]
async fn server_settings_and_wal_level_replica() {
    let client = sql_connect(&pg::shared().connect_params(pg::SUPERUSER, "postgres"))
        .await
        .unwrap();
    assert_eq!(wal_level(&client).await.unwrap(), "logical");
    assert!(current_wal_lsn(&client).await.unwrap() > Lsn::ZERO);

    let replica = Pg::start(PgOptions::default().set("wal_level", "replica"));
    let client = sql_connect(&replica.connect_params(pg::SUPERUSER, "postgres"))
        .await
        .unwrap();
    assert_eq!(wal_level(&client).await.unwrap(), "replica");
    let err = create_slot(&client, &pg::unique_name("no_logical"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("wal_level"), "{err}");
    assert!(!err.is_transient(), "{err}");
}

/// Receive until the stream fails, confirming everything the server says it sent
/// (a fast shutdown waits for the client to confirm before the server exits).
async fn recv_until_error(stream: &mut ReplicationStream) -> SourceError {
    loop {
        match timeout(WAIT, stream.recv())
            .await
            .expect("an error within 30s")
        {
            Ok(ReplicationMessage::Keepalive {
                wal_end,
                reply_requested: true,
            }) => {
                if let Err(e) = stream.send_status(wal_end, false).await {
                    return e;
                }
            }
            Ok(_) => {}
            Err(e) => return e,
        }
    }
}

#[tokio::test]
async fn server_crash_and_restart_are_transient_and_streaming_resumes() {
    let private = std::sync::Arc::new(Pg::start(PgOptions::default()));
    let case = Case::new(&private, pg::SCRAM_USER).await;
    let mut stream = case.stream(pg::SCRAM_USER, &[]).await;
    case.insert(1, "before crash");
    recv_containing(&mut stream, "before crash").await;

    private.stop_immediate();
    let err = recv_until_error(&mut stream).await;
    assert!(err.is_transient(), "{err}");
    let err = ReplicationStream::connect(&case.params(pg::SCRAM_USER))
        .await
        .expect_err("server is down");
    assert!(err.is_transient(), "{err}");

    private.start_again();
    let mut stream = case.stream(pg::SCRAM_USER, &[]).await;
    case.insert(2, "after crash");
    recv_containing(&mut stream, "after crash").await;

    // pg_ctl blocks until the walsender has exited, which needs us answering.
    let restart = tokio::task::spawn_blocking({
        let private = private.clone();
        move || private.restart_fast()
    });
    let err = recv_until_error(&mut stream).await;
    assert!(err.is_transient(), "{err}");
    restart.await.expect("restart_fast");
    let mut stream = case.stream(pg::SCRAM_USER, &[]).await;
    case.insert(3, "after restart");
    recv_containing(&mut stream, "after restart").await;
    drop(stream);
    case.cleanup();
}
