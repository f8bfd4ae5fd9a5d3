//! Loader tests for where values come from: `${ENV}` expansion (in connection keys,
//! stream names and wal2json options), libpq's `PG*` variables, and passwords (kept as
//! written, never shown).

use std::path::Path;

use super::*;

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
