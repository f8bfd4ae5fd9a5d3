//! Loader tests for bad input: every bad-config fixture under `tests/configs/bad/` is
//! rejected with its expected message, messages carry line:column, and null or
//! wrongly shaped values are refused, never a panic.

use std::path::PathBuf;

use super::*;

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
