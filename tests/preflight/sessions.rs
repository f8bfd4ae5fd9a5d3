//! `check` warns when a backfill cannot see other roles' sessions' state: a user that
//! is neither a superuser nor a member of `pg_read_all_stats`; and a chunk such a user
//! waits for says so beside what it waits for.

use pg_cdc_to_kinesis::signal::{self, Signal};
use pg_cdc_to_kinesis::source;

use crate::support::case::load;
use crate::support::kinesis::{self, kinesalite};
use crate::support::pg::{self, unique_name, PgOptions};
use crate::support::process;

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_warns_until_the_user_may_read_all_sessions_state() {
    let pg = pg::shared();
    let case = case("pf_sess").await;
    let user = unique_name("pf_sess_user");
    pg.execute(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{user}_pw'"),
    );
    let yaml = slot_yaml(
        &case.slot,
        &case.db,
        &case.stream,
        &user,
        "      checkpoint: false\n",
    );
    let (config, _dir) = load(&yaml);
    let aws = kinesalite().sdk_config();
    let plain = check::check(&config, &aws).await;
    pg.execute("postgres", &format!("GRANT pg_read_all_stats TO {user}"));
    let granted = check::check(&config, &aws).await;
    let (superuser, _superuser_dir) = case_config(&case, "      checkpoint: false\n");
    let superuser = check::check(&superuser, &aws).await;
    pg.execute("postgres", &format!("DROP ROLE {user}"));
    case.delete_kinesalite_stream().await;
    case.cleanup();

    let Ok(warned) = finding(&plain, "sessions") else {
        panic!("not a warning: {}", check::render(&plain))
    };
    for needle in [
        "warning: ",
        "pg_read_all_stats",
        "idle",
        &format!("GRANT pg_read_all_stats TO {user}"),
    ] {
        assert!(warned.contains(needle), "{needle:?} not in: {warned}");
    }
    assert!(
        plain[0].ok(),
        "a warning failed check: {}",
        check::render(&plain)
    );
    for rows in [&granted, &superuser] {
        let Ok(seen) = finding(rows, "sessions") else {
            panic!("{}", check::render(rows))
        };
        assert!(!seen.contains("warning"), "{seen}");
    }
}

/// Such a user's backfill cannot tell another role's transaction that sits idle from a
/// running one, so its chunk waits for it; the warning it logs names the grant that
/// would have spared the wait. Once the transaction ends, the chunk is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_chunk_names_the_grant_its_user_lacks() {
    // A cluster of its own: the transaction held open below would stall the creation
    // of other tests' slots on the shared one.
    let pg = Pg::start(PgOptions::default());
    let user = unique_name("pf_wait_user");
    pg.execute(
        "postgres",
        &format!("CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{user}_pw'"),
    );
    let case = Case::new(&pg, "pf_wait");
    case.kinesalite_stream(1).await;
    // The slot first: creating it would wait for the transaction below.
    pg.execute(
        &case.db,
        &format!(
            "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES (1, 'a');
             GRANT SELECT ON t TO {user};
             SELECT pg_create_logical_replication_slot('{}', 'wal2json');",
            case.slot
        ),
    );
    let path = case.dir.path().join("configs.yml");
    let extra = "      checkpoint: false\n      create_slot: false\n";
    let yaml = slot_yaml_on(&pg, &case.slot, &case.db, &case.stream, &user, extra);
    std::fs::write(&path, yaml).unwrap();
    let mut streamer = process::Streamer::streaming(&kinesalite().endpoint, &path);
    // Another role's transaction, idle since it took its id, then a backfill of its
    // table.
    let idle = source::sql_connect(&pg.connect_params(SUPERUSER, &case.db))
        .await
        .unwrap();
    idle.batch_execute("BEGIN; UPDATE t SET v = 'b' WHERE id = 1")
        .await
        .unwrap();
    let request = Signal::Backfill {
        slot: case.slot.clone(),
        id: signal::new_id(),
        tables: vec!["public.t".into()],
        filter: None,
    };
    let admin = source::sql_connect(&pg.connect_params(SUPERUSER, &case.db))
        .await
        .unwrap();
    signal::emit(&admin, &request).await.unwrap();

    let grant = format!("GRANT pg_read_all_stats TO {user}");
    let warned = streamer.wait_for_log(&grant, Duration::from_secs(60));
    let early = kinesis::read_all(&kinesalite().client(), &case.stream).await;
    idle.batch_execute("ROLLBACK").await.unwrap();
    let records = kinesis::read_until(
        &kinesalite().client(),
        &case.stream,
        1,
        Duration::from_secs(60),
    )
    .await;
    let log = streamer.kill();
    case.delete_kinesalite_stream().await;
    case.cleanup();

    assert!(warned, "no warning naming the grant:\n{log}");
    let line = log.lines().find(|l| l.contains(&grant)).unwrap_or_default();
    assert!(line.contains("waits for"), "{line}");
    assert!(line.contains("backend pid"), "{line}");
    assert!(early.is_empty(), "read while the chunk waited: {early:?}");
    assert_eq!(
        records.len(),
        1,
        "the chunk is read once the transaction ends:\n{log}"
    );
}
