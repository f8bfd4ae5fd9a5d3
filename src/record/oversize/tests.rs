//! Unit tests of the oversize policy: the error naming both fixes, the claim check and
//! its object key (the same on every retry), Debezium envelopes, per-table overrides.

use super::*;
use crate::config::{OversizeConfig, PartitionKey};
use crate::decode::{Change, Column, Kind};
use crate::record::{RecordEncoder, TxnContext};

fn policy(mode: OversizeMode) -> Oversize {
    Oversize {
        slot: "orders_slot".into(),
        mode,
        bucket: Some("claims".into()),
        prefix: "cdc/".into(),
        per_table: None,
    }
}

fn big_update() -> (Record, Change, TxnContext) {
    let col =
        |name: &str, raw: String| Column::new(name, crate::decode::Json::parse(&raw).unwrap());
    let change = Change {
        kind: Kind::Update,
        schema: "public".into(),
        table: "docs".into(),
        columns: vec![
            col("id", "7".into()),
            col("body", format!("\"{}\"", "x".repeat(5000))),
        ],
        identity: vec![col("id", "7".into())],
        pk: ["id".to_string()].into(),
        lsn: Some(Lsn(0x10)),
        columns_tag: 0,
    };
    let txn = TxnContext {
        xid: Some(9),
        timestamp: Some("2026-01-01 00:00:00+00".into()),
        commit_lsn: Some(Lsn(0x16B3748)),
    };
    let mut out = Vec::new();
    RecordEncoder::new("shop", PartitionKey::PrimaryKey)
        .encode_into(&change, &txn, 3, &mut out)
        .unwrap();
    (out.remove(0), change, txn)
}

fn place<'a>(change: &'a Change, txn: &TxnContext) -> Place<'a> {
    Place {
        schema: &change.schema,
        table: &change.table,
        commit_lsn: txn.commit_lsn,
        lsn: change.lsn,
        seq: 3,
    }
}

#[test]
fn a_record_within_the_limit_is_left_alone() {
    let (mut rec, change, txn) = big_update();
    let before = rec.clone();
    policy(OversizeMode::Fail)
        .admit(&mut rec, place(&change, &txn), 1 << 20)
        .unwrap();
    assert_eq!(rec, before);
}

#[test]
fn fail_mode_names_both_fixes() {
    let (mut rec, change, txn) = big_update();
    let err = policy(OversizeMode::Fail)
        .admit(&mut rec, place(&change, &txn), 1000)
        .unwrap_err()
        .to_string();
    for needle in [
        "public.docs",
        "0/10",
        "oversize: s3",
        "exclude_columns",
        "not dropped",
    ] {
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

#[test]
fn claim_check_keeps_the_envelope_and_replaces_the_data() {
    let (mut rec, change, txn) = big_update();
    let full = rec.data.clone();
    let key = rec.partition_key.clone();
    policy(OversizeMode::S3)
        .admit(&mut rec, place(&change, &txn), 1000)
        .unwrap();
    let offload = rec.offload.as_ref().expect("an offload");
    assert_eq!(
        offload.body.as_ref(),
        full.as_slice(),
        "the object is the full record"
    );
    assert_eq!(offload.bucket, "claims");
    assert_eq!(offload.key, "cdc/orders_slot/00000000016B3748/3.json");
    assert_eq!(
        rec.partition_key, key,
        "same key: same place in the key's order"
    );
    assert!(rec.billed_size() <= 1000);
    let v: serde_json::Value = serde_json::from_slice(&rec.data).unwrap();
    let f: serde_json::Value = serde_json::from_slice(&full).unwrap();
    for kept in [
        "kind",
        "database",
        "schema",
        "table",
        "timestamp",
        "lsn",
        "commit_lsn",
        "xid",
        "seq",
    ] {
        assert_eq!(v[kept], f[kept], "{kept}");
    }
    assert!(v.get("data").is_none() && v.get("old").is_none(), "{v}");
    assert_eq!(v["claim_check"]["bucket"], "claims");
    assert_eq!(v["claim_check"]["key"], offload.key.as_str());
    assert_eq!(v["claim_check"]["bytes"], full.len());
    assert_eq!(
        v["claim_check"]["sha256"],
        hex::encode(Sha256::digest(&full)).as_str()
    );
    // In the data's place, the other fields in their order, byte for byte.
    let text = String::from_utf8(rec.data.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"kind":"update","database":"shop","schema":"public","table":"docs","timestamp":"2026-01-01 00:00:00+00","claim_check":{"bucket":"claims","key":"#),
        "{text}"
    );
    assert!(
        text.ends_with(r#","lsn":"0/10","commit_lsn":"0/16B3748","xid":9,"seq":3}"#),
        "{text}"
    );
}

#[test]
fn the_object_key_is_the_same_on_every_retry() {
    let (mut a, change, txn) = big_update();
    let (mut b, _, _) = big_update();
    let p = policy(OversizeMode::S3);
    p.admit(&mut a, place(&change, &txn), 1000).unwrap();
    p.admit(&mut b, place(&change, &txn), 1000).unwrap();
    assert_eq!(a, b);
    // Without a commit LSN, the content names it.
    let mut no_lsn = place(&change, &txn);
    no_lsn.commit_lsn = None;
    let k = p.object_key(no_lsn, b"{}");
    assert_eq!(k, p.object_key(no_lsn, b"{}"));
    assert!(k.starts_with("cdc/orders_slot/sha256-"), "{k}");
}

#[test]
fn debezium_envelopes_lose_before_and_after_only() {
    let full =
        br#"{"before":{"id":1},"after":{"id":1,"b":"xx"},"source":{"lsn":5},"op":"u","ts_ms":1}"#;
    let claim = claim_check(full, "b", "k").unwrap();
    let v: serde_json::Value = serde_json::from_slice(&claim).unwrap();
    assert!(v.get("before").is_none() && v.get("after").is_none());
    assert_eq!(v["op"], "u");
    assert_eq!(v["source"]["lsn"], 5);
    assert_eq!(v["ts_ms"], 1);
    assert!(String::from_utf8(claim)
        .unwrap()
        .starts_with(r#"{"claim_check":"#));
}

#[test]
fn a_table_override_decides_per_table() {
    let mut slot_policy = policy(OversizeMode::Fail);
    slot_policy = slot_policy.with_table_modes(Arc::new(|_, table| {
        (table == "docs").then_some(OversizeMode::S3)
    }));
    assert_eq!(slot_policy.mode_for("public", "docs"), OversizeMode::S3);
    assert_eq!(slot_policy.mode_for("public", "other"), OversizeMode::Fail);
    assert!(slot_policy.may_offload());
    let none = Oversize::default();
    assert!(!none.may_offload());
    let _ = OversizeConfig::default();
}
