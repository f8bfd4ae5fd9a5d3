//! The admin Lambda's `restart`: it reaches a streaming slot (a new walsender, no
//! change lost) and a stopped one (through another running slot of its database).

use std::collections::BTreeSet;
use std::time::Duration;

use pg_cdc_to_kinesis::admin;
use pg_cdc_to_kinesis::config::Config;
use pg_cdc_to_kinesis::pipeline::SlotState;
use pg_cdc_to_kinesis::run::{Pipeline, RunEnv};
use serde_json::json;

use crate::reload::{drop_slots, ids_in, slot_entry, wait_pid, walsender_pid, write_config, WAIT};
use crate::support::case::wait_state;
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name};

use super::ctx;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reaches_a_streaming_slot_and_a_stopped_one_with_nothing_lost() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("adm_rs"));
    pg.execute(&db, "CREATE TABLE t (id int PRIMARY KEY, v text)");
    let (live, stopped) = (unique_name("adm_rs_live"), unique_name("adm_rs_stop"));
    let (live_s, stopped_s) = (
        unique_stream_name("adm-rs-live"),
        unique_stream_name("adm-rs-stop"),
    );
    let client = kinesalite().client();
    kinesis::create_stream(&client, &live_s, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("configs.yml");
    // Stopped slots wait an hour between tries here: only the signal can restart one.
    write_config(
        &path,
        "stopped_slot_retry_secs: 3600\n",
        &[
            slot_entry(&live, &db, &live_s),
            slot_entry(&stopped, &db, &stopped_s),
        ],
    );
    let config = Config::load(&path).unwrap();
    let p = Pipeline::start(
        &config,
        &RunEnv {
            aws: kinesalite().sdk_config(),
        },
    );
    let state = wait_state(&p.slots[1], WAIT, |s| {
        matches!(s, SlotState::Stopped { .. })
    })
    .await;
    assert!(matches!(state, SlotState::Stopped { .. }), "{state:?}");
    let pid = wait_pid(&live, |p| p.is_some()).await.expect("streams");
    let insert = |from: u64, to: u64| {
        pg.execute(
            &db,
            &format!("INSERT INTO t SELECT g, 'v' FROM generate_series({from}, {to}) g"),
        )
    };

    // A streaming slot: its session ends, confirming, and a new one starts.
    insert(1, 100);
    let ctx = ctx("unused");
    let report = admin::handle(&config, &ctx, json!({"action": "restart", "slot": live}))
        .await
        .unwrap();
    assert_eq!(report["signalled"], true, "{report}");
    insert(101, 200);
    let new_pid = wait_pid(&live, |p| p.is_some_and(|p| p != pid)).await;
    assert!(
        new_pid.is_some_and(|p| p != pid),
        "no new walsender: {new_pid:?} (was {pid})"
    );
    insert(201, 300);
    let all: BTreeSet<u64> = (1..=300).collect();
    assert_eq!(ids_in(&live_s, &all).await, all);
    // Read again after the restart (it resumes before the signal), it is not obeyed twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        walsender_pid(&live),
        new_pid,
        "restarted twice on one signal"
    );

    // A stopped slot has no session: the live slot of its database passes it on.
    kinesis::create_stream(&client, &stopped_s, 1).await;
    let report = admin::handle(&config, &ctx, json!({"action": "restart", "slot": stopped}))
        .await
        .unwrap();
    assert_eq!(report["signalled"], true, "{report}");
    let state = wait_state(&p.slots[1], WAIT, |s| *s == SlotState::Streaming).await;
    assert_eq!(
        state,
        SlotState::Streaming,
        "the stopped slot did not restart"
    );
    assert_eq!(
        walsender_pid(&live),
        new_pid,
        "only the named slot restarts"
    );
    insert(301, 310);
    let late: BTreeSet<u64> = (301..=310).collect();
    assert!(late.is_subset(&ids_in(&stopped_s, &late).await));

    // A slot that is not configured is refused, naming the configured ones.
    let refused = admin::handle(&config, &ctx, json!({"action": "restart", "slot": "nope"}))
        .await
        .unwrap();
    assert_eq!(refused["signalled"], false, "{refused}");
    assert!(
        refused["reason"]
            .as_str()
            .unwrap_or_default()
            .contains(&live),
        "{refused}"
    );

    p.stop();
    p.wait().await.unwrap();
    drop_slots(&[&live, &stopped]);
    for stream in [&live_s, &stopped_s] {
        kinesis::delete_stream(&client, stream).await;
    }
}
