//! A stream in use: keepalives and status updates moving `confirmed_flush_lsn`, option
//! values that need quoting, replies that keep the stream alive, and many rows quickly.

use std::time::{Duration, Instant};

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::{slot_info, sql_connect, ReplicationMessage};
use tokio::time::timeout;

use crate::support::pg::{self, Pg, PgOptions};

use super::*;

#[tokio::test]
async fn keepalives_arrive_and_status_advances_confirmed_flush() {
    let pg = pg::shared();
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
async fn answering_reply_requests_keeps_the_stream_alive() {
    // wal_sender_timeout 2s: the server asks for a reply after 1s of silence and
    // would drop us after 2s without one.
    let private = Pg::start(PgOptions::default().set("wal_sender_timeout", "'2s'"));
    let case = SourceCase::new(&private, pg::SCRAM_USER).await;
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
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
