//! Failures found before a slot exists (a missing stream, no AWS region), and a slot
//! created before a permanent failure named in the error.

use crate::support::case::load;
use crate::support::kinesis::{self, kinesalite, unique_stream_name};
use crate::support::pg::{self, unique_name, SUPERUSER};

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_stops_the_slot_before_creating_it() {
    let pg = pg::shared();
    let db = pg.create_database(&unique_name("pf_stream"));
    let slot = unique_name("pf_stream");
    let yaml = slot_yaml(
        &slot,
        &db,
        &unique_stream_name("pf_typo"),
        SUPERUSER,
        "      checkpoint: false\n",
    );
    let (config, _dir) = load(&yaml);
    let error = stop_message(&config, kinesalite().sdk_config()).await;
    assert!(error.contains("does not exist"), "{error}");
    assert!(
        !slot_exists(pg, &slot),
        "a replication slot was left behind: {error}"
    );
    pg.drop_slot(&slot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_aws_region_stops_the_slot_before_creating_it() {
    let pg = pg::shared();
    let case = case("pf_region").await;
    let (slot, stream) = (&case.slot, &case.stream);
    let (config, _dir) = case_config(&case, "      checkpoint: false\n");
    let credentials = aws_credential_types::Credentials::new("AKIDTEST", "x", None, None, "t");
    let no_region = aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .endpoint_url(&kinesalite().endpoint)
        .credentials_provider(
            aws_credential_types::provider::SharedCredentialsProvider::new(credentials),
        )
        .build();
    let error = stop_message(&config, no_region).await;
    assert!(
        error.contains("region") && error.contains("AWS_REGION"),
        "{error}"
    );
    assert!(!slot_exists(pg, slot), "a replication slot was left behind");
    pg.drop_slot(slot);
    kinesis::delete_stream(&kinesalite().client(), stream).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_created_before_a_permanent_failure_is_named_in_the_error() {
    let pg = pg::shared();
    let case = case("pf_left").await;
    let (slot, stream) = (&case.slot, &case.stream);
    // wal2json refuses the option value at START_REPLICATION, after the slot exists.
    let (config, _dir) = case_config(
        &case,
        "      checkpoint: false\n      options: {actions: 'bogus'}\n",
    );
    let error = stop_message(&config, kinesalite().sdk_config()).await;
    assert!(slot_exists(pg, slot));
    assert!(
        error.contains(&format!("pg_drop_replication_slot('{slot}')"))
            && error.contains("holding WAL"),
        "{error}"
    );
    pg.drop_slot(slot);
    kinesis::delete_stream(&kinesalite().client(), stream).await;
}
