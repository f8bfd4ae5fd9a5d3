//! The built `pg-cdc-admin` binary, driven through a local Lambda runtime API exactly
//! as the Lambda service drives `bootstrap`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::lambda_api::{Outcome, RuntimeApi};
use crate::support::moto;
use crate::support::pg::{self, unique_name};

use super::{admin_case, drop_if_exists, slot_row};

#[tokio::test]
async fn the_lambda_binary_answers_through_the_runtime_api() {
    let pg = pg::shared();
    let slot = unique_name("adm_lambda");
    let case = admin_case(pg, &[&slot]);
    let api = RuntimeApi::start(&[
        r#"{"action":"provision"}"#,
        r#"{"action":"nonsense"}"#,
        r#"{"action":"health"}"#,
    ]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_pg-cdc-admin"))
        .env("AWS_LAMBDA_RUNTIME_API", api.address())
        .env("AWS_LAMBDA_FUNCTION_NAME", "pg-cdc-admin")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("PG_CDC_CONFIG", case.path())
        .env_remove("PG_CDC_CONFIG_SSM_PARAMETER")
        .env("PG_CDC_METRICS_NAMESPACE", "AdminLambdaTest")
        .env("AWS_ENDPOINT_URL", &moto::shared().endpoint)
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start pg-cdc-admin");
    let outcomes = api.wait_outcomes(3, Duration::from_secs(60));
    let _ = child.kill();
    let output = child.wait_with_output().expect("wait");
    let logs = String::from_utf8_lossy(&output.stderr);
    assert_eq!(outcomes.len(), 3, "outcomes {outcomes:?}; logs:\n{logs}");
    match &outcomes[0] {
        (id, Outcome::Response(body)) => {
            assert_eq!(id, "req-0");
            assert_eq!(body["slots"][0]["outcome"], "created", "{body:#}");
        }
        other => panic!("expected a response, got {other:?}; logs:\n{logs}"),
    }
    match &outcomes[1] {
        (id, Outcome::Error(body)) => {
            assert_eq!(id, "req-1");
            assert_eq!(body["errorType"], "BadEvent", "{body}");
            assert!(
                body["errorMessage"]
                    .as_str()
                    .unwrap_or("")
                    .contains("nonsense"),
                "{body}"
            );
        }
        other => panic!("expected an error, got {other:?}"),
    }
    assert!(
        matches!(&outcomes[2], (_, Outcome::Response(body)) if body["slots"][0]["exists"] == true),
        "{:?}",
        outcomes[2]
    );
    // health's metrics are EMF lines on stdout, which Lambda turns into metrics.
    let stdout = String::from_utf8_lossy(&output.stdout);
    let emf: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|v: &serde_json::Value| v.get("_aws").is_some())
        .collect();
    assert_eq!(
        emf.len(),
        1,
        "one EMF line for the one slot; stdout:\n{stdout}"
    );
    assert_eq!(emf[0]["Slot"], slot.as_str());
    assert_eq!(emf[0]["SlotActive"], 0, "{}", emf[0]);
    assert_eq!(
        emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"],
        "AdminLambdaTest"
    );
    assert!(
        logs.lines().any(|l| l.starts_with('{')),
        "JSON logs expected:\n{logs}"
    );
    assert!(slot_row(pg, &slot).starts_with("wal2json"));
    drop_if_exists(pg, &slot);
}
