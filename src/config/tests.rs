//! Tests for the whole loader: the good shapes the format promises (the original
//! README's examples, merges with overrides, every optional key, the demo
//! `configs.yml`) and the helpers the submodules share; bad input is in `errors`,
//! `${ENV}` expansion, libpq variables and passwords in `values`.

use std::path::{Path, PathBuf};

use super::*;

mod errors;
mod values;

fn no_env(_: &str) -> Option<String> {
    None
}

fn load_str(text: &str) -> Result<Config, ConfigError> {
    Config::from_text(Path::new("test.yml"), text, &no_env)
}

fn load_ok(text: &str) -> Config {
    match load_str(text) {
        Ok(c) => c,
        Err(e) => panic!("expected the config to load, got: {e}"),
    }
}

fn load_err(text: &str) -> String {
    match load_str(text) {
        Ok(c) => panic!("expected an error, loaded {c:?}"),
        Err(e) => e.to_string(),
    }
}

fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

const README_EXAMPLE_1: &str = r#"
replication_slots:
    - my_slot:
        host: 'localhost'
        user: postgres
        password: '*****'
        db_name: my_db
        options: {'include-timestamp': True, 'add-tables': 'public.*', 'include-lsn': True}
        kns_stream: 'my-kinesis-stream'
"#;

// The README's second example, with its inline remark turned into a YAML comment.
const README_EXAMPLE_2: &str = r#"
databases:
  - my_database: &my_db
      host: 'localhost'
      user: postgres
      password: '*****'
      db_name: my_db

replication_slots:
    - my_slot:
        <<: *my_db # (will repeate all &my_db node)
        options: {'include-timestamp': True, 'add-tables': 'public.*', 'include-lsn': True}
        kns_stream: 'my-kinesis-stream'
"#;

#[test]
fn original_readme_examples_load_with_defaults() {
    for text in [README_EXAMPLE_1, README_EXAMPLE_2] {
        let config = load_ok(text);
        assert_eq!(config.shutdown_timeout_secs, DEFAULT_SHUTDOWN_TIMEOUT_SECS);
        assert_eq!(
            config.stopped_slot_retry_secs,
            DEFAULT_STOPPED_SLOT_RETRY_SECS
        );
        let [slot] = config.slots.as_slice() else {
            panic!("one slot expected")
        };
        assert_eq!(slot.name, "my_slot");
        assert_eq!((slot.host.as_str(), slot.port), ("localhost", 5432));
        assert_eq!(
            (slot.user.as_str(), slot.db_name.as_str()),
            ("postgres", "my_db")
        );
        assert_eq!(slot.password.as_ref().map(Secret::expose), Some("*****"));
        assert_eq!(slot.kns_stream, "my-kinesis-stream");
        assert_eq!(
            slot.options,
            opts(&[
                ("include-timestamp", "true"),
                ("add-tables", "public.*"),
                ("include-lsn", "true")
            ])
        );
        assert_eq!(slot.region, None);
        assert_eq!(slot.partition_key, PartitionKey::PrimaryKey);
        assert_eq!(
            slot.batch,
            BatchConfig {
                max_records: 500,
                max_bytes: 5 * 1024 * 1024,
                max_record_bytes: None,
                max_in_flight: 4,
                linger_ms: 5,
                aggregation: Aggregation::None,
                wire_format: WireFormat::Cbor,
                shard_records_per_sec: 1000,
                shard_bytes_per_sec: 1024 * 1024,
                // One slot takes the whole default budget.
                buffer_bytes: 64 * 1024 * 1024,
            }
        );
        assert_eq!(
            (
                slot.queue_capacity,
                slot.status_interval_secs,
                slot.create_slot
            ),
            (8192, 10, true)
        );
    }
}

#[test]
fn merges_apply_per_slot_with_local_overrides() {
    let config = load_ok(
        r#"
databases:
  - main: &main {host: db1, port: 5433, user: app, password: pw, db_name: shop}
replication_slots:
  - orders:
      <<: *main
      kns_stream: orders
  - customers:
      <<: *main
      host: db2
      port: 6000
      password: other
      kns_stream: customers
"#,
    );
    let [orders, customers] = config.slots.as_slice() else {
        panic!("two slots expected")
    };
    assert_eq!(
        (orders.name.as_str(), orders.host.as_str(), orders.port),
        ("orders", "db1", 5433)
    );
    assert_eq!(orders.password.as_ref().map(Secret::expose), Some("pw"));
    assert_eq!(
        (
            customers.name.as_str(),
            customers.host.as_str(),
            customers.port
        ),
        ("customers", "db2", 6000)
    );
    assert_eq!(
        customers.password.as_ref().map(Secret::expose),
        Some("other")
    );
    assert_eq!(
        (customers.user.as_str(), customers.db_name.as_str()),
        ("app", "shop")
    );
}

#[test]
fn every_optional_key_is_read() {
    let config = load_ok(
        r#"
shutdown_timeout_secs: 50
stopped_slot_retry_secs: 0
memory_budget_bytes: 67108864
replication_slots:
  - all_keys:
      host: h
      port: 6432
      user: u
      db_name: d
      options: {'format-version': 2, 'add-tables': 'public.a,public.b', 'pretty-print': False, actions: 'insert,update', 'include-xids': yes}
      kns_stream: s.t-u_v
      region: eu-west-1
      partition_key: {columns: [tenant_id, id]}
      batch_max_records: 100
      batch_max_bytes: 1048576
      max_record_bytes: 524288
      max_in_flight: 64
      linger_ms: 0
      aggregation: kpl
      wire_format: json
      shard_records_per_sec: 0
      shard_bytes_per_sec: 2097152
      queue_capacity: 16
      status_interval_secs: 1
      create_slot: false
  - fixed_key:
      {host: h, user: u, db_name: d, kns_stream: s, partition_key: {fixed: all}}
  - table_key:
      {host: h, user: u, db_name: d, kns_stream: s, partition_key: table}
"#,
    );
    assert_eq!(config.shutdown_timeout_secs, 50);
    assert_eq!(config.stopped_slot_retry_secs, 0, "0 = never");
    assert_eq!(config.memory_budget_bytes, 64 * 1024 * 1024);
    let [all, fixed, table] = config.slots.as_slice() else {
        panic!("three slots expected")
    };
    assert_eq!(all.port, 6432);
    assert_eq!(all.password, None);
    // File order kept; `yes` stays text (strict booleans) for wal2json to parse.
    assert_eq!(
        all.options,
        opts(&[
            ("format-version", "2"),
            ("add-tables", "public.a,public.b"),
            ("pretty-print", "false"),
            ("actions", "insert,update"),
            ("include-xids", "yes"),
        ])
    );
    assert_eq!(all.kns_stream, "s.t-u_v");
    assert_eq!(all.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        all.partition_key,
        PartitionKey::Columns(vec!["tenant_id".into(), "id".into()])
    );
    assert_eq!(
        all.batch,
        BatchConfig {
            max_records: 100,
            max_bytes: 1048576,
            max_record_bytes: Some(524288),
            max_in_flight: 64,
            linger_ms: 0,
            aggregation: Aggregation::Kpl,
            wire_format: WireFormat::Json,
            shard_records_per_sec: 0,
            shard_bytes_per_sec: 2097152,
            // 64 MiB split over three slots.
            buffer_bytes: 64 * 1024 * 1024 / 3,
        }
    );
    assert_eq!(
        (
            all.queue_capacity,
            all.status_interval_secs,
            all.create_slot
        ),
        (16, 1, false)
    );
    assert_eq!(fixed.partition_key, PartitionKey::Fixed("all".into()));
    assert_eq!(table.partition_key, PartitionKey::Table);
}

#[test]
fn demo_configs_yml_loads_with_local_defaults() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("configs.yml");
    let text = std::fs::read_to_string(&path).expect("configs.yml at the repo root");
    let config = match Config::from_text(&path, &text, &no_env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let streams: Vec<&str> = config.slots.iter().map(|s| s.kns_stream.as_str()).collect();
    assert_eq!(streams, ["cdc-demo-orders", "cdc-demo-customers"]);
    for slot in &config.slots {
        assert_eq!(
            (slot.host.as_str(), slot.port, slot.user.as_str()),
            ("127.0.0.1", 5432, "postgres")
        );
        assert_eq!(
            (
                slot.db_name.as_str(),
                slot.password.as_ref().map(Secret::expose)
            ),
            ("postgres", Some("postgres"))
        );
    }
    assert_eq!(
        config.slots[0].options,
        opts(&[
            ("include-timestamp", "true"),
            ("add-tables", "public.orders")
        ])
    );
}

#[test]
fn slot_keys_list_matches_the_documented_struct() {
    // deny_unknown_fields on SlotFile rejects any SLOT_KEYS entry it does not declare.
    let body: String = validate::SLOT_KEYS
        .iter()
        .map(|k| format!("  {k}: 1\n"))
        .collect();
    let parsed: Result<file::SlotFile, _> = serde_saphyr::from_str(&body);
    assert!(parsed.is_ok(), "{:?}", parsed.err());
}

#[test]
fn database_entries_accept_every_slot_key_as_the_original_tool_did() {
    // The original tool merged any key from a `databases` anchor; a slot may then be
    // nothing but `<<: *anchor`.
    let config = load_ok(
        r#"
databases:
  - shop: &shop
      host: db1
      user: app
      password: pw
      db_name: shop
      options: {'include-timestamp': True, 'add-tables': 'public.*'}
      kns_stream: shop-stream
      region: eu-west-1
      batch_max_records: 100
      heartbeat_interval_secs: 30
replication_slots:
  - orders:
      <<: *shop
  - customers:
      <<: *shop
      kns_stream: customers-stream
      options: {'add-tables': 'public.customers'}
"#,
    );
    let [orders, customers] = config.slots.as_slice() else {
        panic!("two slots expected")
    };
    assert_eq!(orders.kns_stream, "shop-stream");
    assert_eq!(orders.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        orders.options,
        opts(&[("include-timestamp", "true"), ("add-tables", "public.*")])
    );
    assert_eq!(orders.batch.max_records, 100);
    assert_eq!(orders.heartbeat_interval_secs, Some(30));
    assert_eq!(customers.kns_stream, "customers-stream");
    assert_eq!(customers.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        customers.options,
        opts(&[("add-tables", "public.customers")])
    );
    // A typo in a database entry is still caught, with the slot keys as suggestions.
    let err = load_err(
        "databases:\n  - d: &d {host: h, kns_steam: s}\nreplication_slots:\n  - s: {<<: *d, user: u, db_name: x}\n",
    );
    assert!(
        err.contains("in database `d`: unknown key `kns_steam`; did you mean `kns_stream`?"),
        "{err}"
    );
}

#[test]
fn many_slots_warn_when_their_floor_holds_more_than_the_budget() {
    let slots_with = |budget: u64, n: usize| {
        let mut yaml = format!("memory_budget_bytes: {budget}\nreplication_slots:\n");
        for i in 0..n {
            yaml += &format!("  - s{i}: {{host: h, user: u, db_name: d, kns_stream: s}}\n");
        }
        load_ok(&yaml)
    };
    let slots = |n: usize| slots_with(64 << 20, n);
    let six = slots(6);
    assert_eq!(six.records_bound_bytes(), 6 * ((64 << 20) / 6));
    assert_eq!(six.memory_floor_warning(), None, "six slots split 64 MiB");
    // 64 MiB / 7 is 9.1 MiB: under the floor of 10 MiB, which each of the seven gets.
    let seven = slots(7);
    assert_eq!(seven.records_bound_bytes(), 7 * (10 << 20));
    let warning = seven.memory_floor_warning().expect("7 x 10 MiB > 64 MiB");
    for want in [
        "7 slots hold up to 10 MiB of records each",
        "a full 5 MiB request",
        "together up to 70 MiB",
        "memory_budget_bytes (67108864 bytes)",
        "memory_budget_bytes: 73400320",
    ] {
        assert!(warning.contains(want), "{want:?} in {warning}");
    }
    // The figure it names is enough: with it, each slot's share is the floor.
    let sized = slots_with(73400320, 7);
    assert_eq!(sized.records_bound_bytes(), 7 * (10 << 20));
    assert_eq!(sized.memory_floor_warning(), None);
}
