//! Tests for the whole loader: every bad-config fixture under `tests/configs/bad/`
//! and the good shapes the format promises (the original README's examples, merges
//! with overrides, every optional key, `${ENV}` expansion, the demo `configs.yml`).

use std::path::{Path, PathBuf};

use super::*;

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

#[test]
fn every_bad_fixture_is_rejected_with_its_expected_message() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/configs/bad exists")
        .map(|e| e.expect("readable dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 14, "only {} fixtures", files.len());
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable fixture");
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| panic!("{} must start with `# expect: `", file.display()));
        // The process environment, less libpq's variables, which would fill a missing
        // `host` or `db_name` on a developer's machine.
        let env = |name: &str| {
            (!name.starts_with("PG"))
                .then(|| std::env::var(name).ok())
                .flatten()
        };
        let err = match Config::from_text(&file, &text, &env) {
            Ok(c) => panic!("{} loaded: {c:?}", file.display()),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(expect),
            "{}:\n  message: {err}\n  expected: {expect}",
            file.display()
        );
        assert!(
            err.starts_with(&file.display().to_string()),
            "message must name the file: {err}"
        );
    }
}

#[test]
fn messages_carry_line_and_column() {
    let err = load_err("replication_slots:\n  - orders:\n      hots: x\n");
    assert!(err.starts_with("test.yml:3:7: "), "{err}");
    // A merged value points at the merge and at where the value was written.
    let err = load_err(
        "databases:\n  - d: &d\n      host: h\n      user: u\n      db_name: x\n      port: 0\n\
         replication_slots:\n  - s:\n      <<: *d\n      kns_stream: k\n",
    );
    assert!(err.starts_with("test.yml:9:11: "), "{err}");
    assert!(
        err.contains("(value written at line 6, column 13)"),
        "{err}"
    );
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
fn env_vars_expand_in_connection_and_stream_keys() {
    let env = |name: &str| match name {
        "PGHOST" => Some("db.internal".to_string()),
        "PGPORT" => Some("6543".to_string()),
        "PGPASSWORD" => Some("s3cr$t".to_string()),
        "STAGE" => Some("prod".to_string()),
        "AWS_REGION_X" => Some("us-east-2".to_string()),
        _ => None,
    };
    let text = r#"
replication_slots:
  - orders:
      host: ${PGHOST}
      port: ${PGPORT}
      user: ${PGUSER:-cdc}
      password: ${PGPASSWORD}
      db_name: app_${STAGE}
      kns_stream: orders-${STAGE}
      region: ${AWS_REGION_X}
  - no_password:
      host: h
      port: ${UNSET_PORT:-5999}
      user: u
      password: ${UNSET_PASSWORD:-}
      db_name: d
      kns_stream: s
"#;
    let config = match Config::from_text(Path::new("env.yml"), text, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    let [orders, no_password] = config.slots.as_slice() else {
        panic!("two slots expected")
    };
    assert_eq!(
        (orders.host.as_str(), orders.port, orders.user.as_str()),
        ("db.internal", 6543, "cdc")
    );
    assert_eq!(orders.password.as_ref().map(Secret::expose), Some("s3cr$t"));
    assert_eq!(
        (orders.db_name.as_str(), orders.kns_stream.as_str()),
        ("app_prod", "orders-prod")
    );
    assert_eq!(orders.region.as_deref(), Some("us-east-2"));
    assert_eq!(no_password.port, 5999);
    assert_eq!(no_password.password, None, "an empty password means none");
}

#[test]
fn unset_env_var_error_names_variable_slot_and_key() {
    let err = load_err(
        "replication_slots:\n  - s:\n      {host: h, user: u, db_name: d, kns_stream: '${NOPE}'}\n",
    );
    assert!(
        err.contains("replication slot `s`, key `kns_stream`"),
        "{err}"
    );
    assert!(
        err.contains("environment variable `NOPE` is not set"),
        "{err}"
    );
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
fn password_never_appears_in_debug_output() {
    let config = load_ok(
        "replication_slots:\n  - s: {host: h, user: u, password: hunter2-secret, db_name: d, kns_stream: k}\n",
    );
    let debug = format!("{config:?}");
    assert!(!debug.contains("hunter2-secret"), "{debug}");
    assert!(debug.contains("Secret(***)"));
    assert_eq!(
        config.slots[0]
            .password
            .as_ref()
            .map(|p| p.to_string())
            .as_deref(),
        Some("***")
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
fn null_and_wrongly_shaped_values_are_rejected_not_panicking() {
    for (text, expect) in [
        ("- a\n", "the top level must be a mapping"),
        ("replication_slots: {s: {}}\n", "must be a list"),
        ("replication_slots:\n  - just_a_name\n", "each item of `replication_slots`"),
        ("replication_slots:\n  - s:\n", "expected a mapping of `key: value` settings"),
        ("replication_slots:\n  - a: {}\n    b: {}\n", "exactly one key"),
        ("replication_slots:\n  - s: {host: [a], user: u, db_name: d, kns_stream: k}\n", "expected a single text value"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, options: [a]}\n", "expected a mapping"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, options: {actions: }}\n", "needs a boolean, number or text"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, partition_key: {columns: []}}\n", "at least one column"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, max_record_bytes: 6000000}\n", "from 1 to 5242880"),
        ("replication_slots:\n  - s: {host: ' ', user: u, db_name: d, kns_stream: k}\n", "key `host`: must not be empty"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, linger_ms: fast}\n", "expected a whole number"),
        ("replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k, region: EU West}\n", "invalid AWS region"),
        ("replication_slots:\n  - s: {host: , user: u, db_name: d, kns_stream: k}\n", "missing required key `host`"),
        ("databases: [{d: {host: h}}]\nreplication_slots:\n  - 1: {host: h}\n", "keys must be names"),
    ] {
        let err = load_err(text);
        assert!(err.contains(expect), "for {text:?}\n  got: {err}\n  expected: {expect}");
    }
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
fn unquoted_numeric_passwords_keep_the_text_as_written() {
    let config = load_ok(
        r#"
databases:
  - d: &d {host: h, user: u, db_name: x, kns_stream: k, password: 007}
replication_slots:
  - leading_zero: {<<: *d, password: 0123}
  - exponent: {<<: *d, password: 1e3}
  - hex: {<<: *d, password: 0x1F}
  - decimal: {<<: *d, password: 12.50}
  - boolean: {<<: *d, password: True}
  - merged: {<<: *d}
  - block:
      <<: *d
      password: 00042
  - numeric_user: {<<: *d, user: 0123, db_name: 1e3}
"#,
    );
    let passwords: Vec<(&str, Option<&str>)> = config
        .slots
        .iter()
        .map(|s| (s.name.as_str(), s.password.as_ref().map(Secret::expose)))
        .collect();
    assert_eq!(
        passwords,
        [
            ("leading_zero", Some("0123")),
            ("exponent", Some("1e3")),
            ("hex", Some("0x1F")),
            ("decimal", Some("12.50")),
            ("boolean", Some("True")),
            ("merged", Some("007")),
            ("block", Some("00042")),
            ("numeric_user", Some("007")),
        ]
    );
    let numeric = &config.slots[7];
    assert_eq!(
        (numeric.user.as_str(), numeric.db_name.as_str()),
        ("0123", "1e3")
    );
}

#[test]
fn an_aliased_numeric_password_keeps_its_text() {
    let config = load_ok(
        "databases:\n  - d: {password: &pw 0123}\nreplication_slots:\n  - s: {host: h, user: u, db_name: x, kns_stream: k, password: *pw}\n",
    );
    assert_eq!(
        config.slots[0].password.as_ref().map(Secret::expose),
        Some("0123")
    );
}

#[test]
fn double_dollar_brace_is_a_literal_and_bad_references_hide_the_value() {
    let config = load_ok(
        "replication_slots:\n  - s: {host: h, user: u, db_name: x, kns_stream: k, password: 'a$${b}c$$d'}\n",
    );
    assert_eq!(
        config.slots[0].password.as_ref().map(Secret::expose),
        Some("a${b}c$$d")
    );
    for password in ["'hunt${er:2}'", "'hunt${er2'", "'hunt${}er2'"] {
        let err = load_err(&format!(
            "replication_slots:\n  - s: {{host: h, user: u, db_name: x, kns_stream: k, password: {password}}}\n"
        ));
        assert!(
            err.contains("key `password`") && err.contains("character 5"),
            "{err}"
        );
        assert!(
            !err.contains("hunt") && !err.contains("er2") && !err.contains("er:2"),
            "{err}"
        );
    }
}

#[test]
fn wal2json_option_values_expand_env_vars() {
    let env = |name: &str| match name {
        "TABLE" => Some("orders".to_string()),
        "FV" => Some("1".to_string()),
        _ => None,
    };
    let text = "replication_slots:\n  - s:\n      {host: h, user: u, db_name: x, kns_stream: k, options: {'add-tables': 'public.${TABLE},public.$${literal}', 'format-version': '${FV}', 'filter-tables': '${UNSET:-audit.*}', 'include-xids': True}}\n";
    let config = match Config::from_text(Path::new("env.yml"), text, &env) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(
        config.slots[0].options,
        opts(&[
            ("add-tables", "public.orders,public.${literal}"),
            ("format-version", "1"),
            ("filter-tables", "audit.*"),
            ("include-xids", "true"),
        ])
    );
    let err = load_err(
        "replication_slots:\n  - s: {host: h, user: u, db_name: x, kns_stream: k, options: {'add-tables': 'public.${NOPE}'}}\n",
    );
    assert!(
        err.contains("key `options`, option `add-tables`: environment variable `NOPE` is not set"),
        "{err}"
    );
}

#[test]
fn libpq_variables_fill_what_the_config_leaves_out_and_the_config_wins() {
    let env = |name: &str| match name {
        "PGHOST" => Some("env-host".to_string()),
        "PGPORT" => Some("6543".to_string()),
        "PGUSER" => Some("env_user".to_string()),
        "PGPASSWORD" => Some("env-pw${NOT_EXPANDED}".to_string()),
        "PGDATABASE" => Some("env_db".to_string()),
        "PGSSLMODE" => Some("require".to_string()),
        _ => None,
    };
    let text = "replication_slots:\n  - from_env:\n      kns_stream: s\n  - from_file:\n      \
                host: h\n      port: 7000\n      user: u\n      password: p\n      db_name: d\n      \
                sslmode: disable\n      kns_stream: s\n  - no_password:\n      password: ''\n      \
                kns_stream: s\n";
    let config =
        Config::from_text(Path::new("env.yml"), text, &env).unwrap_or_else(|e| panic!("{e}"));
    let [from_env, from_file, no_password] = config.slots.as_slice() else {
        panic!("three slots expected")
    };
    assert_eq!(
        (
            from_env.host.as_str(),
            from_env.port,
            from_env.user.as_str(),
            from_env.db_name.as_str()
        ),
        ("env-host", 6543, "env_user", "env_db")
    );
    assert_eq!(
        from_env.password.as_ref().map(Secret::expose),
        Some("env-pw${NOT_EXPANDED}"),
        "a variable's value is taken as written"
    );
    assert_eq!(from_env.sslmode, Some(SslMode::Require));
    assert_eq!(
        (
            from_file.host.as_str(),
            from_file.port,
            from_file.user.as_str(),
            from_file.db_name.as_str()
        ),
        ("h", 7000, "u", "d")
    );
    assert_eq!(from_file.password.as_ref().map(Secret::expose), Some("p"));
    assert_eq!(from_file.sslmode, Some(SslMode::Disable));
    assert_eq!(
        no_password.password, None,
        "`password: ''` is a choice of no password"
    );
}

#[test]
fn a_key_neither_the_config_nor_the_environment_gives_is_reported_at_its_slot() {
    let err = load_err(
        "replication_slots:\n  - s:\n      user: u\n      db_name: d\n      kns_stream: k\n",
    );
    assert!(
        err.starts_with("test.yml:2:")
            && err.contains("missing required key `host`")
            && err.contains("PGHOST"),
        "{err}"
    );
    let bad_port = |name: &str| (name == "PGPORT").then(|| "x".to_string());
    let err = Config::from_text(
        Path::new("test.yml"),
        "replication_slots:\n  - s: {host: h, user: u, db_name: d, kns_stream: k}\n",
        &bad_port,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("PGPORT: `x` is not a port number"), "{err}");
}
