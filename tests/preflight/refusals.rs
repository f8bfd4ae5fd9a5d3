//! `check` and `run` refuse alike: a slot of another database or plugin, a dropped slot
//! whose checkpoint remains, SSM unreachable with checkpoints on, and a missing wal2json.

use pg_cdc_to_kinesis::check;

use crate::support::case::load;
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::moto;
use crate::support::pg::{self, unique_name, SUPERUSER};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_refuse_a_slot_of_another_database_or_plugin_alike() {
    let pg = pg::shared();
    let owner = pg.create_database(&unique_name("pf_owner"));
    let db = pg.create_database(&unique_name("pf_other"));
    let stream = unique_stream_name("pf_other");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    let aws = kinesalite().sdk_config();
    let cases = [
        (
            unique_name("pf_otherdb"),
            owner.as_str(),
            "wal2json",
            owner.as_str(),
        ),
        (
            unique_name("pf_plugin"),
            db.as_str(),
            "test_decoding",
            "test_decoding",
        ),
    ];
    for (slot, created_in, plugin, named) in &cases {
        pg.execute(
            created_in,
            &format!("SELECT pg_create_logical_replication_slot('{slot}', '{plugin}')"),
        );
        let (config, _dir) = load(&slot_yaml(
            slot,
            &db,
            &stream,
            SUPERUSER,
            "      checkpoint: false\n",
        ));
        let rows = check::check(&config, &aws).await;
        let checked = finding(&rows, "slot")
            .clone()
            .expect_err("check passed a slot run refuses");
        assert!(checked.contains(named), "{checked}");
        let stopped = stop_message(&config, aws.clone()).await;
        assert_eq!(stopped, checked, "check and run disagree");
        pg.drop_slot(slot);
    }
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_and_run_refuse_a_dropped_slot_whose_checkpoint_remains() {
    let pg = pg::shared();
    let m = moto::shared();
    let aws = m.sdk_config();
    let db = pg.create_database(&unique_name("pf_gap"));
    let slot = unique_name("pf_gap");
    let stream = unique_stream_name("pf_gap");
    let kinesis_client = aws_sdk_kinesis::Client::new(&aws);
    kinesis::create_stream(&kinesis_client, &stream, 1).await;
    let parameter = format!("/pg-cdc-tests/{slot}/checkpoint");
    // What a run that confirmed 0/1000 and then lost its slot leaves in SSM.
    let checkpoint = format!(
        r#"{{"lsn":"0/1000","slot":"{slot}","stream":"{stream}","database":"{db}","time":"2024-01-01T00:00:00Z","final":false}}"#
    );
    pg_cdc_to_kinesis::checkpoint::ssm_client(&aws, None)
        .put_parameter()
        .name(&parameter)
        .value(checkpoint)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let (config, _dir) = load(&slot_yaml(
        &slot,
        &db,
        &stream,
        SUPERUSER,
        &format!("      checkpoint_parameter: {parameter}\n"),
    ));

    let rows = check::check(&config, &aws).await;
    let checked = finding(&rows, "checkpoint")
        .clone()
        .expect_err("check passed a checkpoint run refuses");
    assert!(
        checked.contains("0/1000") && checked.contains("accept_checkpoint_gap"),
        "{checked}"
    );
    let stopped = stop_message(&config, aws.clone()).await;
    assert_eq!(stopped, checked, "check and run disagree");
    assert!(!slot_exists(pg, &slot), "the refused slot was created");
    pg.drop_slot(&slot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_fails_in_one_line_when_ssm_is_unreachable_with_checkpoints_on() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_ssm"));
    let slot = unique_name("pf_ssm");
    // Nothing listens there: every AWS call fails to connect.
    let unreachable = kinesis::sdk_config(&format!("http://127.0.0.1:{}", kinesis::free_port()));
    let (config, _dir) = load(&slot_yaml(&slot, &db, "s", SUPERUSER, ""));
    let rows = check::check(&config, &unreachable).await;
    let checked = finding(&rows, "checkpoint")
        .clone()
        .expect_err("check passed although SSM is unreachable");
    assert!(
        checked.contains("SSM GetParameter failed") && checked.contains("reachable"),
        "{checked}"
    );
    assert!(
        checked.len() < 600 && !checked.contains('\n'),
        "not one short line: {checked}"
    );
    let (off, _dir) = load(&slot_yaml(
        &slot,
        &db,
        "s",
        SUPERUSER,
        "      checkpoint: false\n",
    ));
    let rows = check::check(&off, &unreachable).await;
    assert!(
        rows[0].checks.iter().all(|(n, _)| n != "checkpoint"),
        "{}",
        check::render(&rows)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_wal2json_stops_the_slot_and_says_to_install_it() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_nolib"));
    let stream = unique_stream_name("pf_nolib");
    kinesis::create_stream(&kinesalite().client(), &stream, 1).await;
    // A role whose sessions look for libraries in an empty place: to its server
    // processes wal2json is not installed (SQLSTATE 58P01).
    let user = unique_name("pf_nolib_user");
    pg.execute(
        "postgres",
        &format!(
            "CREATE ROLE {user} LOGIN REPLICATION PASSWORD '{user}_pw'; \
             ALTER ROLE {user} SET dynamic_library_path = '/nonexistent'"
        ),
    );
    let existing = unique_name("pf_nolib_old");
    pg.execute(
        &db,
        &format!("SELECT pg_create_logical_replication_slot('{existing}', 'wal2json')"),
    );
    // A slot to create (the SQL call fails) and one to stream (the walsender fails).
    for (slot, what) in [
        (unique_name("pf_nolib_new"), "creating"),
        (existing.clone(), "streaming"),
    ] {
        let (config, _dir) = load(&slot_yaml(
            &slot,
            &db,
            &stream,
            &user,
            "      checkpoint: false\n",
        ));
        let error = stop_message(&config, kinesalite().sdk_config()).await;
        assert!(
            error.contains("58P01") && error.contains("install wal2json"),
            "{what}: {error}"
        );
        pg.drop_slot(&slot);
    }
    pg.execute("postgres", &format!("DROP ROLE {user}"));
    kinesis::delete_stream(&kinesalite().client(), &stream).await;
}
