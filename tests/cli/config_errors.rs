//! Bad or missing configs: exit 2 with the file and the problem named, as plain or JSON
//! log lines, from `run`, `check` and `status`.

use std::path::{Path, PathBuf};

use crate::support::process::{self, assert_no_panic, PANIC_TEXT};

use super::*;

#[test]
fn bad_configs_exit_2_naming_the_file_and_the_problem() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yml"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 12,
        "only {} bad-config fixtures in {}",
        files.len(),
        dir.display()
    );

    let mut failures = Vec::new();
    for file in &files {
        let text =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect:"))
            .map(str::trim);
        let expect = expect.unwrap_or_else(|| {
            panic!("{} must start with `# expect: <substring>`", file.display())
        });
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = file.to_string_lossy().into_owned();
        for args in [
            vec!["--config", path.as_str()],
            vec!["check", "--config", path.as_str()],
        ] {
            let out = process::run(process::command("http://127.0.0.1:9", &args), CHECK_TIMEOUT);
            if out.code != Some(2)
                || !out.stderr.contains(expect)
                || !out.stderr.contains(&name)
                || out.stderr.contains(PANIC_TEXT)
            {
                failures.push(format!(
                    "{args:?}: want exit 2 and stderr with {expect:?} and {name:?}; got {}",
                    out.describe()
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n{}",
        failures.len(),
        files.len() * 2,
        failures.join("\n\n")
    );
}

#[test]
fn a_missing_config_file_exits_2_and_says_which_file() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let missing = dir.path().join("nowhere").join("configs.yml");
    let out = process::run(
        process::command(
            "http://127.0.0.1:9",
            &["--config", &missing.to_string_lossy()],
        ),
        CHECK_TIMEOUT,
    );
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(
        out.stderr.contains(&*missing.to_string_lossy()),
        "{}",
        out.describe()
    );
    assert!(
        out.stderr.contains("cannot read the config file"),
        "{}",
        out.describe()
    );
    assert_no_panic("missing --config", &out.stderr);

    // No --config: the default `configs.yml` in the working directory.
    let mut cmd = process::command("http://127.0.0.1:9", &["check"]);
    cmd.current_dir(dir.path());
    let out = process::run(cmd, CHECK_TIMEOUT);
    assert_eq!(out.code, Some(2), "{}", out.describe());
    assert!(out.stderr.contains("configs.yml"), "{}", out.describe());
    assert_no_panic("default config", &out.stderr);
}

/// Under `--log-format json` every stderr line is JSON (CloudWatch parses them), the
/// config error included; the exit code stays 2.
#[test]
fn config_errors_are_json_lines_under_log_format_json_and_exit_2() {
    let bad =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/configs/bad/06-unknown-slot-key.yml");
    let bad = bad.to_string_lossy().into_owned();
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"));
    let missing = dir
        .path()
        .join("missing.yml")
        .to_string_lossy()
        .into_owned();
    for (config, expect) in [
        (&bad, "unknown key"),
        (&missing, "cannot read the config file"),
    ] {
        for command in ["run", "check", "status"] {
            let args = [command, "--config", config.as_str(), "--log-format", "json"];
            let out = process::run(process::command("http://127.0.0.1:9", &args), CHECK_TIMEOUT);
            assert_eq!(out.code, Some(2), "{args:?}: {}", out.describe());
            let lines: Vec<serde_json::Value> = out
                .stderr
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    serde_json::from_str(l)
                        .unwrap_or_else(|e| panic!("{args:?}: not a JSON line ({e}): {l}"))
                })
                .collect();
            let [line] = lines.as_slice() else {
                panic!("{args:?}: want one JSON line: {}", out.describe())
            };
            assert_eq!(line["level"], "ERROR", "{line}");
            let message = line["message"].as_str().unwrap_or_default();
            assert!(
                message.contains(expect) && message.contains(config.as_str()),
                "{args:?}: {line}"
            );
        }
    }
}
