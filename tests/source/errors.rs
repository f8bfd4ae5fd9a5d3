//! How the source classifies what goes wrong: permanent (bad option, password, database,
//! slot; `wal_level` too low) or transient (slot in use, walsender ended, nothing
//! listening, a server crash), with streaming resumed after a restart.

use pg_cdc_to_kinesis::lsn::Lsn;
use pg_cdc_to_kinesis::source::{
    create_slot, current_wal_lsn, sql_connect, wal_level, ReplicationMessage, ReplicationStream,
    SourceError,
};
use tokio::time::timeout;

use crate::support::pg::{self, Pg, PgOptions};

use super::*;

#[tokio::test]
async fn unknown_option_is_a_permanent_server_error() {
    let pg = pg::shared();
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
    let case = SourceCase::new(pg, pg::SCRAM_USER).await;
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
    let case = SourceCase::new(&private, pg::SCRAM_USER).await;
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
