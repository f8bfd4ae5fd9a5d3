//! KPL aggregation against code the project does not write: the kinesis-aggregation
//! library for Python (`aws_kinesis_agg`, installed by `scripts/install-deps` into
//! `.tools/venv`) de-aggregates what our `Aggregator` writes, our `deaggregate` reads
//! what it writes, and the README's consumer example runs as printed. Then `tail`
//! against kinesalite prints each user record of an aggregate as its own line.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use aws_sdk_kinesis::primitives::Blob;
use pg_cdc_to_kinesis::sink::kinesis::aggregate::{deaggregate, Aggregator, UserRecord};
use serde_json::{json, Value};

use crate::support::kinesis;
use crate::support::process;

/// The venv's Python, where `aws_kinesis_agg` is installed (`KINESIS_AGG_PYTHON`
/// overrides it).
fn python() -> PathBuf {
    if let Some(bin) = std::env::var_os("KINESIS_AGG_PYTHON") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/venv/bin/python")
}

/// Runs `script` with `stdin`; returns its stdout, panics with its stderr on failure.
fn run_python(script: &str, stdin: &str) -> String {
    let bin = python();
    assert!(
        bin.exists(),
        "{} does not exist: run scripts/install-deps or set KINESIS_AGG_PYTHON",
        bin.display()
    );
    let mut child = Command::new(&bin)
        .args(["-c", script])
        .env("PYTHONIOENCODING", "utf-8")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "python failed ({}); is aws_kinesis_agg installed (scripts/install-deps)?\n{stderr}",
        out.status
    );
    assert!(stderr.is_empty(), "python wrote to stderr:\n{stderr}");
    String::from_utf8(out.stdout).unwrap()
}

/// The Python block of the README's "Consuming aggregated records" section.
fn readme_consumer_example() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md");
    let section = &readme[readme
        .find("### Consuming aggregated records")
        .expect("README has a \"Consuming aggregated records\" section")..];
    let start = section.find("```python\n").expect("a python block") + "```python\n".len();
    let len = section[start..]
        .find("\n```")
        .expect("the end of the python block");
    section[start..start + len].to_string()
}

/// User records with keys that repeat, a non-ASCII key, and one-line JSON data.
fn change_records(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let key = match i % 4 {
                0 => "public.orders|1".to_string(),
                1 => "public.orders|2".to_string(),
                2 => "public.ключи|é ü".to_string(),
                _ => format!("public.items|{i}"),
            };
            let data = json!({"kind": "insert", "table": "orders", "seq": i, "note": "ü\"x"});
            (key, data.to_string())
        })
        .collect()
}

#[test]
fn readme_lambda_example_deaggregates_our_aggregates_with_aws_kinesis_agg() {
    let records = change_records(50);
    let mut agg = Aggregator::new();
    for (key, data) in &records {
        agg.push(key, data.as_bytes());
    }
    let outer_key = agg.first_partition_key().unwrap().to_string();
    let aggregate = agg.finish();
    let plain = r#"{"kind":"delete","seq":99}"#;

    // A Kinesis event as Lambda delivers it: the aggregate, then a plain record.
    let glue = r#"
import base64, json, sys
event = {"Records": [
    {"eventSource": "aws:kinesis", "kinesis": {
        "kinesisSchemaVersion": "1.0", "sequenceNumber": str(i),
        "approximateArrivalTimestamp": 1700000000.0, "partitionKey": r["key"],
        "data": base64.b64encode(bytes.fromhex(r["hex"])).decode()}}
    for i, r in enumerate(json.load(sys.stdin))]}
handler(event, None)
"#;
    let script = format!("{}\n{glue}", readme_consumer_example());
    let input = json!([
        {"key": outer_key, "hex": hex::encode(&aggregate)},
        {"key": "public.orders|9", "hex": hex::encode(plain)},
    ]);
    let out = run_python(&script, &input.to_string());

    let mut expected: Vec<String> = records.iter().map(|(k, d)| format!("{k} {d}")).collect();
    expected.push(format!("public.orders|9 {plain}"));
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);
}

#[test]
fn aws_kinesis_agg_reads_our_binary_data_and_explicit_hash_key_exactly() {
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let key = format!("k{}", i % 7);
            let len = [0, 1, 200, 70_000][i % 4];
            let data = (0..len).map(|b| (b * 31 + i) as u8).collect();
            (key, data)
        })
        .collect();
    let hash_key = "170141183460469231731687303715884105727";
    let mut agg = Aggregator::with_explicit_hash_key(hash_key);
    for (key, data) in &records {
        agg.push(key, data);
    }
    let outer_key = agg.first_partition_key().unwrap().to_string();
    let aggregate = agg.finish();

    let script = r#"
import base64, json, sys
from aws_kinesis_agg.deaggregator import deaggregate_records
r = json.load(sys.stdin)
event = [{"kinesis": {"kinesisSchemaVersion": "1.0", "sequenceNumber": "1",
    "approximateArrivalTimestamp": 0, "partitionKey": r["key"],
    "data": base64.b64encode(bytes.fromhex(r["hex"])).decode()}}]
for u in deaggregate_records(event):
    k = u["kinesis"]
    assert k.get("aggregated"), "not read as an aggregate"
    print(json.dumps({"key": k["partitionKey"], "ehk": k["explicitHashKey"],
                      "hex": base64.b64decode(k["data"]).hex()}))
"#;
    let input = json!({"key": outer_key, "hex": hex::encode(&aggregate)});
    let out = run_python(script, &input.to_string());
    let got: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let expected: Vec<Value> = records
        .iter()
        .map(|(k, d)| json!({"key": k, "ehk": hash_key, "hex": hex::encode(d)}))
        .collect();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "user records differ");
}

/// Aggregates `records` (key, data, explicit hash key) with `aws_kinesis_agg`; returns
/// the outer partition key and the aggregate.
fn python_aggregate(records: &[(String, Vec<u8>, Option<String>)]) -> (String, Vec<u8>) {
    let script = r#"
import json, sys
from aws_kinesis_agg.aggregator import RecordAggregator
agg = RecordAggregator()
for r in json.load(sys.stdin):
    assert agg.add_user_record(r["key"], bytes.fromhex(r["hex"]), r["ehk"]) is None, "full"
key, _, data = agg.clear_and_get().get_contents()
print(json.dumps({"key": key, "hex": data.hex()}))
"#;
    let input: Vec<Value> = records
        .iter()
        .map(|(k, d, e)| json!({"key": k, "hex": hex::encode(d), "ehk": e}))
        .collect();
    let out = run_python(script, &Value::Array(input).to_string());
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    (
        v["key"].as_str().unwrap().to_string(),
        hex::decode(v["hex"].as_str().unwrap()).unwrap(),
    )
}

#[test]
fn deaggregate_reads_what_aws_kinesis_agg_aggregates() {
    let records: Vec<(String, Vec<u8>, Option<String>)> = (0..30)
        .map(|i| {
            let key = ["a", "bb", "ключ", "a b c"][i % 4].to_string();
            let data = format!("{{\"seq\":{i}}}").into_bytes();
            // Some records carry their own explicit hash key, as the KPL allows.
            let ehk = (i % 5 == 0).then(|| format!("{}", i * 1000));
            (key, data, ehk)
        })
        .collect();
    let (outer_key, aggregate) = python_aggregate(&records);
    assert_eq!(outer_key, "a");
    let got = deaggregate(&outer_key, &aggregate).unwrap();
    let expected: Vec<UserRecord> = records
        .iter()
        .map(|(k, d, e)| UserRecord {
            partition_key: k.clone(),
            explicit_hash_key: e.clone(),
            data: d.clone(),
        })
        .collect();
    assert_eq!(got, expected);
}

#[test]
fn our_aggregate_is_byte_identical_to_aws_kinesis_agg() {
    let records: Vec<(String, Vec<u8>, Option<String>)> = change_records(200)
        .into_iter()
        .map(|(k, d)| (k, d.into_bytes(), None))
        .collect();
    let (_, theirs) = python_aggregate(&records);
    let mut agg = Aggregator::new();
    for (key, data, _) in &records {
        agg.push(key, data);
    }
    let ours = agg.finish();
    assert_eq!(ours.len(), theirs.len());
    assert!(ours == theirs, "the aggregates differ");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_each_user_record_of_an_aggregate_as_a_line() {
    let server = kinesis::kinesalite();
    let client = server.client();
    let stream = kinesis::unique_stream_name("kpl-tail");
    kinesis::create_stream(&client, &stream, 1).await;

    let records = change_records(5);
    let mut agg = Aggregator::new();
    for (key, data) in &records {
        agg.push(key, data.as_bytes());
    }
    let outer_key = agg.first_partition_key().unwrap().to_string();
    let plain = r#"{"kind":"delete","seq":99}"#;
    for (key, data) in [
        (outer_key.as_str(), agg.finish()),
        ("public.orders|9", plain.as_bytes().to_vec()),
    ] {
        client
            .put_record()
            .stream_name(&stream)
            .partition_key(key)
            .data(Blob::new(data))
            .send()
            .await
            .expect("PutRecord");
    }
    let mut expected: Vec<&str> = records.iter().map(|(_, d)| d.as_str()).collect();
    expected.push(plain);

    let tail = |limit: usize| {
        let limit = limit.to_string();
        let args = [
            "tail",
            "--stream",
            &stream,
            "--from-start",
            "--limit",
            &limit,
        ];
        process::run(
            process::command(&server.endpoint, &args),
            Duration::from_secs(60),
        )
    };
    let all = tail(6);
    assert_eq!(all.code, Some(0), "{}", all.describe());
    assert_eq!(all.stdout.lines().collect::<Vec<_>>(), expected);
    // The limit counts user records: it can stop inside an aggregate.
    let three = tail(3);
    assert_eq!(three.code, Some(0), "{}", three.describe());
    assert_eq!(three.stdout.lines().collect::<Vec<_>>(), expected[..3]);

    kinesis::delete_stream(&client, &stream).await;
}
