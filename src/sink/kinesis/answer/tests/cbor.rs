//! CBOR answers (to CBOR requests) against the same documents in JSON as the SDK
//! reads them: the same outcome, successful or not.

use super::*;
use crate::sink::kinesis::cbor::tests::to_cbor;
use crate::sink::kinesis::cbor::CONTENT_TYPE as CBOR;

/// The outcome of the answer `doc` with `status`: sent in JSON and read by the SDK
/// alone; sent in CBOR (definite or `indefinite` lengths) and read with [`Answer`]
/// (and whether [`Answer`] read it).
async fn json_and_cbor(
    sent: usize,
    status: u16,
    doc: &serde_json::Value,
    indefinite: bool,
) -> (Outcome, Outcome, bool) {
    let json = Canned {
        status,
        body: doc.to_string().into_bytes(),
        content_type: JSON,
    };
    let cbor = Canned {
        status,
        body: to_cbor(doc, indefinite),
        content_type: CBOR,
    };
    let (by_sdk, _, _) = both(sent, &json).await;
    let (_, read_here, was_read) = both(sent, &cbor).await;
    (by_sdk, read_here, was_read)
}

/// Whether [`Answer`] found `answer` a successful CBOR answer it could not read.
async fn unreadable(answer: &Canned) -> bool {
    let reader = Answer::new(1);
    let _ = client(answer)
        .put_records()
        .stream_name("s")
        .set_records(Some(Vec::new()))
        .customize()
        .interceptor(reader.clone())
        .send()
        .await;
    reader.cbor_unreadable()
}

#[test]
fn successful_cbor_answers_read_as_their_json() {
    let rt = runtime();
    let answers = [
        (
            2,
            json!({"FailedRecordCount": 0, "Records": [accepted("shardId-000000000000"), accepted("shardId-000000000003")], "EncryptionType": "NONE"}),
        ),
        (
            3,
            json!({"FailedRecordCount": 2, "Records": [
                accepted("shardId-000000000001"),
                failed("ProvisionedThroughputExceededException", "Rate exceeded"),
                failed("InternalFailure", "Internal service failure."),
            ]}),
        ),
        (
            2,
            json!({"Records": [accepted("shardId-000000000000"), failed("KMSAccessDeniedException", "no \"kms\": café\n")]}),
        ),
        (
            3,
            json!({"Records": [accepted("shardId-000000000000"), accepted("shardId-000000000000")]}),
        ),
        (
            2,
            json!({"Records": [{"ShardId": "shardId-000000000002", "SequenceNumber": "1"}, {"SequenceNumber": "2"}], "FailedRecordCount": 0}),
        ),
    ];
    for (sent, doc) in &answers {
        for indefinite in [false, true] {
            let (by_sdk, read_here, was_read) =
                rt.block_on(json_and_cbor(*sent, 200, doc, indefinite));
            assert!(was_read, "{doc}: not read by the sink's reader");
            assert_eq!(read_here, by_sdk, "{doc}");
        }
    }
}

#[test]
fn cbor_error_answers_classify_as_their_json() {
    let rt = runtime();
    let errors = [
        (
            400,
            json!({"__type": "ProvisionedThroughputExceededException", "message": "Rate exceeded"}),
        ),
        (
            400,
            json!({"__type": "ResourceNotFoundException", "message": "Stream s under account 123456789012 not found."}),
        ),
        (
            400,
            json!({"__type": "AccessDeniedException", "Message": "User is not authorized"}),
        ),
        (
            400,
            json!({"__type": "KMSThrottlingException", "message": "slow", "code": 7}),
        ),
        (400, json!({"__type": "SerializationException"})),
        (500, json!({"__type": "InternalFailure"})),
    ];
    for (status, doc) in &errors {
        for indefinite in [false, true] {
            let (by_sdk, read_here, was_read) =
                rt.block_on(json_and_cbor(1, *status, doc, indefinite));
            assert!(!was_read, "{doc}");
            assert_eq!(read_here, by_sdk, "{status} {doc}");
        }
    }
    let (throttled, _, _) = rt.block_on(json_and_cbor(1, 400, &errors[0].1, false));
    assert!(
        matches!(
            throttled,
            Outcome::RetryAll {
                throttled: true,
                ..
            }
        ),
        "{throttled:?}"
    );
    let (missing, _, _) = rt.block_on(json_and_cbor(1, 400, &errors[1].1, false));
    assert!(matches!(missing, Outcome::Permanent { .. }), "{missing:?}");
}

#[test]
fn unreadable_cbor_answers_are_sent_again() {
    let rt = runtime();
    let bodies = [
        (200, to_cbor(&json!({"Records": 5}), false)),
        (200, to_cbor(&json!({"FailedRecordCount": 0}), false)),
        (200, b"not cbor".to_vec()),
        (503, b"Service Unavailable".to_vec()),
    ];
    for (status, body) in bodies {
        let canned = Canned {
            status,
            body: body.clone(),
            content_type: CBOR,
        };
        let (_, outcome, was_read) = rt.block_on(both(1, &canned));
        assert!(!was_read, "{body:x?}");
        assert!(
            matches!(
                outcome,
                Outcome::RetryAll {
                    throttled: false,
                    ..
                }
            ),
            "{status} {body:x?}: {outcome:?}"
        );
        // A successful answer that is not one says so, for the sink to turn to JSON.
        assert_eq!(
            rt.block_on(unreadable(&canned)),
            status == 200,
            "{status} {body:x?}"
        );
    }
    let readable = Canned {
        status: 200,
        body: to_cbor(&json!({"Records": [accepted("s")]}), false),
        content_type: CBOR,
    };
    assert!(!rt.block_on(unreadable(&readable)));
    let json = Canned {
        status: 200,
        body: b"not json".to_vec(),
        content_type: JSON,
    };
    assert!(!rt.block_on(unreadable(&json)));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// Any answer of accepted and failed entries, in either length form, for as
    /// many records or one more: the same outcome as its JSON read by the SDK.
    #[test]
    fn generated_cbor_answers_read_as_their_json(
        records in prop::collection::vec(entry(), 0..20),
        extra in 0..2usize,
        indefinite in any::<bool>(),
    ) {
        let doc = json!({"FailedRecordCount": 0, "Records": records});
        let (by_sdk, read_here, was_read) =
            runtime().block_on(json_and_cbor(records.len() + extra, 200, &doc, indefinite));
        prop_assert!(was_read);
        prop_assert_eq!(read_here, by_sdk);
    }
}
