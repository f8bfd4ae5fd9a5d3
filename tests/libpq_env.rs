//! libpq's conventions against a real server: `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGDATABASE` and a password file (`PGPASSFILE`) fill what `configs.yml` leaves out,
//! as `psql` would use them, and a password file others may read is refused with a
//! warning, as libpq refuses it.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use crate::support::kinesis;
use crate::support::pg::{self, password_for, SUPERUSER};
use crate::support::process;

const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_variables_and_the_password_file_fill_what_the_config_leaves_out() {
    let pg = pg::shared();
    let db = pg.create_database(&pg::unique_name("libpq_db"));
    let table = pg::unique_name("libpq_t");
    pg.execute(&db, &format!("CREATE TABLE {table} (id int PRIMARY KEY);"));
    let slot = pg::unique_name("libpq_slot");
    let stream = kinesis::unique_stream_name("libpq");
    let client = kinesis::kinesalite().client();
    kinesis::create_stream(&client, &stream, 1).await;

    let dir = tempfile::tempdir().expect("tempdir");
    // No host, port, user, password or db_name: they come from the environment.
    let config = dir.path().join("configs.yml");
    std::fs::write(
        &config,
        format!(
            "replication_slots:\n  - {slot}:\n      options: {{add-tables: 'public.{table}'}}\n      \
             kns_stream: {stream}\n      checkpoint: false\n"
        ),
    )
    .expect("write config");
    let passfile = dir.path().join("pgpass");
    let password = password_for(SUPERUSER).expect("the superuser has a password");
    std::fs::write(
        &passfile,
        format!(
            "# other servers first: the first matching line wins\n\
             otherhost:*:*:*:wrong\n\
             127.0.0.1:{}:{db}:{SUPERUSER}:{password}\n\
             *:*:*:*:wrong\n",
            pg.port
        ),
    )
    .expect("write pgpass");
    let check = |mode: u32| {
        std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(mode))
            .expect("chmod pgpass");
        let config = config.to_string_lossy();
        let mut cmd: Command = process::command(
            &kinesis::kinesalite().endpoint,
            &["check", "--config", &config],
        );
        cmd.env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg.port.to_string())
            .env("PGUSER", SUPERUSER)
            .env("PGDATABASE", &db)
            .env("PGPASSFILE", &passfile)
            .env_remove("PGPASSWORD")
            .env_remove("PGSSLMODE")
            .env_remove("PGSSLROOTCERT");
        process::run(cmd, CHECK_TIMEOUT)
    };

    let out = check(0o600);
    assert_eq!(out.code, Some(0), "{}", out.describe());
    assert!(
        out.stdout
            .contains(&format!("{slot} (database {db}, stream {stream}): OK")),
        "{}",
        out.describe()
    );

    // Like libpq: a password file the group or others may read is not used.
    let out = check(0o644);
    assert_eq!(out.code, Some(1), "{}", out.describe());
    assert!(
        out.stderr.contains("has group or world access") && out.stderr.contains("chmod 0600"),
        "{}",
        out.describe()
    );
    assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));

    kinesis::delete_stream(&client, &stream).await;
    pg.execute("postgres", &format!("DROP DATABASE \"{db}\" WITH (FORCE);"));
}
