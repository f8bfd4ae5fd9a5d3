//! The answer as this reader reads it against the SDK's own reading: the same
//! outcome for every answer, and error answers left to the SDK.

use aws_sdk_kinesis::config::http::HttpRequest;
use aws_sdk_kinesis::config::{HttpClient, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_types::body::SdkBody;
use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::sink::kinesis::request::RecordResult;

/// Answers every request with one status and body: no network.
#[derive(Debug, Clone)]
struct Canned {
    status: u16,
    body: Vec<u8>,
    content_type: &'static str,
}

const JSON: &str = "application/x-amz-json-1.1";

impl HttpConnector for Canned {
    fn call(&self, _: HttpRequest) -> HttpConnectorFuture {
        let mut response = HttpResponse::new(
            self.status.try_into().expect("a valid status"),
            SdkBody::from(self.body.clone()),
        );
        response
            .headers_mut()
            .insert("Content-Type", self.content_type);
        HttpConnectorFuture::ready(Ok(response))
    }
}

impl HttpClient for Canned {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

fn client(answer: &Canned) -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_kinesis::config::Region::new("eu-west-1"))
        .credentials_provider(aws_sdk_kinesis::config::Credentials::for_tests())
        .retry_config(aws_sdk_kinesis::config::retry::RetryConfig::disabled())
        .http_client(SharedHttpClient::new(answer.clone()))
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// The outcome for a request of `sent` records answered with `answer`: read by the
/// SDK alone, and read with [`Answer`] (with whether [`Answer`] read it).
async fn both(sent: usize, answer: &Canned) -> (Outcome, Outcome, bool) {
    let client = client(answer);
    let request = || {
        client
            .put_records()
            .stream_name("s")
            .set_records(Some(Vec::new()))
    };
    let by_sdk = request::classify(sent, request().send().await, None);
    let reader = Answer::new(sent);
    let result = request()
        .customize()
        .interceptor(reader.clone())
        .send()
        .await;
    let read = reader.take();
    let was_read = read.is_some();
    (by_sdk, request::classify(sent, result, read), was_read)
}

fn ok(body: serde_json::Value) -> Canned {
    Canned {
        status: 200,
        body: body.to_string().into_bytes(),
        content_type: JSON,
    }
}

fn accepted(shard: &str) -> serde_json::Value {
    json!({"SequenceNumber": "49590338271490256608559692538361571095921575989136588898", "ShardId": shard})
}

fn failed(code: &str, message: &str) -> serde_json::Value {
    json!({"ErrorCode": code, "ErrorMessage": message})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn successful_answers_are_read_here_as_the_sdk_reads_them() {
    let rt = runtime();
    let answers = [
        (
            2,
            json!({"FailedRecordCount": 0, "Records": [accepted("shardId-000000000000"), accepted("shardId-000000000003")], "EncryptionType": "NONE"}),
        ),
        (
            4,
            json!({"FailedRecordCount": 2, "Records": [
                accepted("shardId-000000000001"),
                failed("ProvisionedThroughputExceededException", "Rate exceeded for shard shardId-000000000001 in stream s under account 123456789012."),
                failed("InternalFailure", "Internal service failure."),
                accepted("shardId-000000000001"),
            ]}),
        ),
        (
            1,
            json!({"Records": [failed("KMSThrottlingException", "slow")]}),
        ),
        // A record refused for a reason the sink cannot retry: the slot stops, with
        // the message (escapes and non-ASCII decoded).
        (
            2,
            json!({"Records": [accepted("shardId-000000000000"), failed("KMSAccessDeniedException", "no \"kms\" for you: café\n")]}),
        ),
        // Fewer results than records: everything is sent again.
        (
            3,
            json!({"FailedRecordCount": 0, "Records": [accepted("shardId-000000000000"), accepted("shardId-000000000000")]}),
        ),
        // Fields in another order, an entry without a shard id.
        (
            2,
            json!({"Records": [{"ShardId": "shardId-000000000002", "SequenceNumber": "1"}, {"SequenceNumber": "2"}], "FailedRecordCount": 0}),
        ),
    ];
    for (sent, body) in answers {
        let (by_sdk, read_here, was_read) = rt.block_on(both(sent, &ok(body.clone())));
        assert!(was_read, "{body}: not read by the sink's reader");
        assert_eq!(read_here, by_sdk, "{body}");
    }
    let (_, partial, _) = rt.block_on(both(
        3,
        &ok(json!({"Records": [accepted("shardId-000000000007"), failed("InternalFailure", "x"), failed("ProvisionedThroughputExceededException", "y")]})),
    ));
    assert_eq!(
        partial,
        Outcome::Partial {
            results: vec![
                RecordResult::Accepted {
                    shard_id: Some("shardId-000000000007".into())
                },
                RecordResult::Failed,
                RecordResult::Throttled,
            ]
        }
    );
}

#[test]
fn error_answers_and_unreadable_bodies_are_left_to_the_sdk() {
    let rt = runtime();
    let answers = [
        (
            400,
            r#"{"__type":"ProvisionedThroughputExceededException","message":"Rate exceeded"}"#,
        ),
        (
            400,
            r#"{"__type":"ResourceNotFoundException","message":"Stream s under account 123456789012 not found."}"#,
        ),
        (
            400,
            r#"{"__type":"AccessDeniedException","Message":"User is not authorized"}"#,
        ),
        (500, r#"{"__type":"InternalFailure"}"#),
        (503, "Service Unavailable"),
        (200, r#"{"Records": 5}"#),
        (200, "not json"),
        (200, r#"{"FailedRecordCount": 0}"#),
        // Fields the sink does not use, typed wrong or out of range: the SDK refuses
        // them, so the sink's reader leaves them to it.
        (
            200,
            r#"{"FailedRecordCount":3000000000,"Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
        ),
        (
            200,
            r#"{"FailedRecordCount":"0","Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
        ),
        (
            200,
            r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":1,"ShardId":"s"}]}"#,
        ),
        (
            200,
            r#"{"EncryptionType":7,"Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
        ),
    ];
    for (status, body) in answers {
        let canned = Canned {
            status,
            body: body.as_bytes().to_vec(),
            content_type: JSON,
        };
        let (by_sdk, read_here, was_read) = rt.block_on(both(1, &canned));
        assert!(!was_read, "{status} {body}: read by the sink's reader");
        assert_eq!(read_here, by_sdk, "{status} {body}");
        if status == 200 {
            // None of these is a readable answer to the SDK either: all is sent again.
            assert!(
                matches!(
                    by_sdk,
                    Outcome::RetryAll {
                        throttled: false,
                        ..
                    }
                ),
                "{body}: {by_sdk:?}"
            );
        }
    }
    // And the SDK's classification still reaches the sink through the reader.
    let throttled = Canned {
        status: 400,
        body: answers[0].1.as_bytes().to_vec(),
        content_type: JSON,
    };
    assert!(matches!(
        rt.block_on(both(1, &throttled)).1,
        Outcome::RetryAll {
            throttled: true,
            ..
        }
    ));
}

fn entry() -> impl Strategy<Value = serde_json::Value> {
    prop_oneof![
        "shardId-0000000000[0-9]{2}".prop_map(|s| accepted(&s)),
        (
            prop::sample::select(vec![
                "ProvisionedThroughputExceededException",
                "KMSThrottlingException",
                "InternalFailure",
                "KMSNotFoundException",
            ]),
            any::<String>()
        )
            .prop_map(|(code, message)| failed(code, &message)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Any answer of accepted and failed entries (messages of any text), for as many
    /// records or one more: the same outcome both ways.
    #[test]
    fn generated_answers_read_the_same(records in prop::collection::vec(entry(), 0..20), extra in 0..2usize) {
        let sent = records.len() + extra;
        let body = json!({"FailedRecordCount": 0, "Records": records});
        let (by_sdk, read_here, was_read) = runtime().block_on(both(sent, &ok(body)));
        prop_assert!(was_read);
        prop_assert_eq!(read_here, by_sdk);
    }
}

#[test]
fn the_usual_answer_is_read_without_serde() {
    let kinesis = br#"{"EncryptionType":"NONE","FailedRecordCount":0,"Records":[{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ShardId":"shardId-000000000000"},{"SequenceNumber":"49590338271490256608559692540925702759324208523137515618","ShardId":"shardId-000000000003"}]}"#;
    assert_eq!(
        all_accepted(kinesis),
        Some(vec!["shardId-000000000000", "shardId-000000000003"])
    );
    let other_order =
        br#"{"Records":[{"SequenceNumber":"1","ShardId":"shardId-1"}],"FailedRecordCount":0}"#;
    assert_eq!(all_accepted(other_order), Some(vec!["shardId-1"]));
    assert_eq!(
        all_accepted(br#"{"FailedRecordCount":0,"Records":[]}"#),
        Some(vec![])
    );
    // DEL is no control character to JSON: read here as serde reads it.
    let del = "{\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"s\u{7f}\"}]}";
    assert_eq!(all_accepted(del.as_bytes()), Some(vec!["s\u{7f}"]));
    assert_eq!(by_serde(del.as_bytes()), Some(vec!["s\u{7f}".to_string()]));
    // Anything else goes to serde: a failed entry, whitespace, an escape, another
    // field, fields in another order inside an entry, Records twice, no Records,
    // trailing bytes, a cut answer.
    for body in [
        r#"{"FailedRecordCount":1,"Records":[{"ErrorCode":"InternalFailure","ErrorMessage":"x"}]}"#,
        r#"{"FailedRecordCount":0, "Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
        r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s\u0031"}]}"#,
        r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s","X":1}]}"#,
        r#"{"FailedRecordCount":0,"Records":[{"ShardId":"s","SequenceNumber":"1"}]}"#,
        r#"{"Records":[],"Records":[{"SequenceNumber":"1","ShardId":"s"}]}"#,
        r#"{"FailedRecordCount":0}"#,
        r#"{"FailedRecordCount":0,"Records":[]}x"#,
        r#"{"FailedRecordCount":0,"Records":[{"SequenceNumber":"1","ShardId":"s"}"#,
        r#"{"FailedRecordCount":,"Records":[]}"#,
        r#"{"FailedRecordCount":00,"Records":[]}"#,
        r#"{"FailedRecordCount":2147483648,"Records":[]}"#,
        r#"{"Other":"x","Records":[]}"#,
        // A control byte or a character past ASCII anywhere.
        "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"s\u{1}\"}]}",
        "{\"FailedRecordCount\":0,\"Records\":[{\"SequenceNumber\":\"1\",\"ShardId\":\"é\"}]}",
    ] {
        assert_eq!(all_accepted(body.as_bytes()), None, "{body}");
    }
}

/// What serde reads from `body`, when every entry is accepted: the shard ids.
fn by_serde(body: &[u8]) -> Option<Vec<String>> {
    let doc: Document<'_> = serde_json::from_slice(body).ok()?;
    doc.records
        .iter()
        .map(|e| match (&e.shard_id, &e.error_code) {
            (Some(shard), None) => Some(shard.to_string()),
            _ => None,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Cut or changed anywhere, an answer is read without serde only as serde reads it.
    #[test]
    fn the_fast_reading_is_serde_s_or_none(
        shards in prop::collection::vec("shardId-[0-9]{1,12}", 0..6),
        cut in any::<prop::sample::Index>(),
        flip in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let records: Vec<_> = shards.iter().map(|s| accepted(s)).collect();
        let body = json!({"EncryptionType": "KMS", "FailedRecordCount": 0, "Records": records}).to_string().into_bytes();
        prop_assert_eq!(all_accepted(&body).map(|v| v.iter().map(|s| s.to_string()).collect::<Vec<_>>()), Some(shards.clone()));
        let mut changed = body.clone();
        changed[flip.index(body.len())] = byte;
        let cut = &body[..cut.index(body.len())];
        for variant in [&changed[..], cut] {
            if let Some(fast) = all_accepted(variant) {
                let fast: Vec<String> = fast.iter().map(|s| s.to_string()).collect();
                prop_assert_eq!(Some(fast), by_serde(variant), "{}", String::from_utf8_lossy(variant));
            }
        }
    }
}

mod cbor;
