//! The admin Lambda's `provision`: it creates missing slots and a second run changes
//! nothing; it refuses without logical WAL or the replication privilege.

use pg_cdc_to_kinesis::admin;
use serde_json::json;

use crate::support::moto;
use crate::support::pg::{self, unique_name, Pg, PgOptions};

use super::*;

#[tokio::test]
async fn provision_creates_missing_slots_and_a_second_run_changes_nothing() {
    let pg = pg::shared();
    let (a, b) = (unique_name("adm_prov"), unique_name("adm_prov"));
    let case = admin_case(pg, &[&a, &b]);
    let ctx = ctx("unused");

    let first = admin::handle(&case.config, &ctx, json!({"action": "provision"}))
        .await
        .expect("provision");
    assert_eq!(first["ok"], true, "{first:#}");
    for (i, slot) in [&a, &b].iter().enumerate() {
        let report = &first["slots"][i];
        assert_eq!(report["slot"], **slot);
        assert_eq!(report["outcome"], "created", "{report:#}");
        for name in [
            "connect",
            "wal_level",
            "privilege",
            "capacity",
            "wal2json",
            "slot",
        ] {
            assert_eq!(check(report, name)["ok"], true, "{name}: {report:#}");
        }
        assert!(
            slot_row(pg, slot).starts_with("wal2json|f|"),
            "{}",
            slot_row(pg, slot)
        );
    }
    let before = (slot_row(pg, &a), slot_row(pg, &b));
    // Other tests create and drop slots on the shared cluster at the same time: count only
    // the slots this test's prefix could name.
    let ours = format!(
        "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'adm\\_prov\\_{}\\_%'",
        std::process::id()
    );
    let slots_before = pg.psql(&ours);
    assert_eq!(slots_before.trim(), "2", "{slots_before}");

    let second = admin::handle(&case.config, &ctx, json!({"action": "provision"}))
        .await
        .expect("provision again");
    assert_eq!(second["ok"], true, "{second:#}");
    assert_eq!(second["slots"][0]["outcome"], "exists");
    assert_eq!(second["slots"][1]["outcome"], "exists");
    assert_eq!((slot_row(pg, &a), slot_row(pg, &b)), before);
    assert_eq!(pg.psql(&ours), slots_before);
    drop_if_exists(pg, &a);
    drop_if_exists(pg, &b);
}

#[tokio::test]
async fn provision_refuses_without_logical_wal_or_replication_privilege() {
    // wal_level = replica: reported with the fix, and nothing is created.
    let replica = Pg::start(PgOptions::default().set("wal_level", "replica"));
    let slot = unique_name("adm_replica");
    let case1 = admin_case(&replica, &[&slot]);
    let report = admin::provision(&case1.config, &moto::shared().sdk_config()).await;
    let json = serde_json::to_value(&report).unwrap();
    assert!(!report.ok, "{json:#}");
    let wal = check(&json["slots"][0], "wal_level");
    assert_eq!(wal["ok"], false);
    let detail = wal["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("wal_level = replica") && detail.contains("rds.logical_replication = 1"),
        "{detail}"
    );
    assert_eq!(json["slots"][0]["outcome"], "none");
    assert_eq!(
        replica
            .psql("SELECT count(*) FROM pg_replication_slots")
            .trim(),
        "0"
    );

    // A user without REPLICATION: told how to grant it; nothing is created.
    let pg = pg::shared();
    let user = unique_name("adm_norepl");
    pg.psql(&format!("CREATE ROLE {user} LOGIN PASSWORD 'pw_{user}'"));
    let slot = unique_name("adm_norepl");
    let case2 = case(pg, &user, Some(&format!("pw_{user}")), &[&slot]);
    let json =
        serde_json::to_value(admin::provision(&case2.config, &moto::shared().sdk_config()).await)
            .unwrap();
    let privilege = check(&json["slots"][0], "privilege");
    assert_eq!(privilege["ok"], false, "{json:#}");
    let detail = privilege["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("ALTER ROLE {user} WITH REPLICATION")),
        "{detail}"
    );
    assert!(detail.contains("rds_replication"), "{detail}");
    assert_eq!(slot_row(pg, &slot), "");
    pg.psql(&format!("DROP ROLE {user}"));
}
