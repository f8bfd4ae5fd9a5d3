//! `check` warns when a backfill cannot see other roles' sessions' state: a user that
//! is neither a superuser nor a member of `pg_read_all_stats`.

use crate::support::case::load;
use crate::support::kinesis::kinesalite;
use crate::support::pg::{self, unique_name};

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
