//! The prepared body against the SDK's own: the same request reaches the wire, in
//! JSON as the SDK writes it, or the same document in CBOR.

use std::sync::{Arc, Mutex};

use aws_sdk_kinesis::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_kinesis::primitives::Blob;
use aws_sdk_kinesis::types::PutRecordsRequestEntry;
use proptest::prelude::*;

use super::*;
use crate::record::Record;
use crate::sink::kinesis::cbor::tests::as_json;
use crate::sink::kinesis::schedule::{Aggregate, Entry};

/// What reached the transport: headers of interest and the body.
#[derive(Debug, Default, Clone)]
struct Sent {
    length: Option<String>,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// Records the request as it would be sent, then stops it: no network.
#[derive(Debug)]
struct Capture(Arc<Mutex<Sent>>);

/// Records the request as it is signed: the signature covers this body.
#[derive(Debug)]
struct AsSigned(Arc<Mutex<Sent>>);

fn sent(request: &aws_sdk_kinesis::config::http::HttpRequest) -> Sent {
    Sent {
        length: request.headers().get("Content-Length").map(str::to_string),
        content_type: request.headers().get("Content-Type").map(str::to_string),
        body: request.body().bytes().unwrap_or_default().to_vec(),
    }
}

impl Intercept for AsSigned {
    fn name(&self) -> &'static str {
        "AsSigned"
    }

    fn read_before_signing(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = sent(context.request());
        Ok(())
    }
}

impl Intercept for Capture {
    fn name(&self) -> &'static str {
        "Capture"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        *self.0.lock().unwrap() = sent(context.request());
        Err("captured".into())
    }
}

fn client() -> aws_sdk_kinesis::Client {
    let conf = aws_sdk_kinesis::Config::builder()
        .behavior_version_latest()
        .region(aws_sdk_kinesis::config::Region::new("eu-west-1"))
        .endpoint_url("http://127.0.0.1:9")
        .credentials_provider(aws_sdk_kinesis::config::Credentials::for_tests())
        .build();
    aws_sdk_kinesis::Client::from_conf(conf)
}

/// The request the SDK writes itself for `units` (each record copied into a `Blob`).
async fn by_the_sdk(stream: &str, units: &[Unit]) -> Sent {
    let entries = units
        .iter()
        .map(|u| {
            PutRecordsRequestEntry::builder()
                .data(Blob::new(u.data().to_vec()))
                .partition_key(u.partition_key())
                .set_explicit_hash_key(u.explicit_hash_key().map(str::to_string))
                .build()
                .unwrap()
        })
        .collect();
    let seen = Arc::new(Mutex::new(Sent::default()));
    let _ = client()
        .put_records()
        .stream_name(stream)
        .set_records(Some(entries))
        .customize()
        .interceptor(Capture(seen.clone()))
        .send()
        .await;
    let sent = seen.lock().unwrap().clone();
    sent
}

/// The request as the sink sends it in `format`: an empty list, and [`Body`] in its
/// place; and the request as it was signed.
async fn prepared(format: WireFormat, stream: &str, units: &[Unit]) -> (Sent, Sent) {
    let (seen, signed) = (Arc::default(), Arc::default());
    let _ = client()
        .put_records()
        .stream_name(stream)
        .set_records(Some(Vec::new()))
        .customize()
        .interceptor(prepare(format, stream, units))
        .interceptor(AsSigned(Arc::clone(&signed)))
        .interceptor(Capture(Arc::clone(&seen)))
        .send()
        .await;
    let sent = (seen.lock().unwrap().clone(), signed.lock().unwrap().clone());
    sent
}

fn single(key: &str, data: Vec<u8>) -> Unit {
    Unit {
        shard: 0,
        members: vec![Entry::new(0, Record::new(key, data))],
        aggregate: None,
    }
}

fn aggregate(key: &str, hash: Option<&str>, data: Vec<u8>) -> Unit {
    Unit {
        shard: 0,
        members: vec![Entry::new(0, Record::new("a", b"x".to_vec()))],
        aggregate: Some(Aggregate {
            data,
            partition_key: key.to_string(),
            explicit_hash_key: hash.map(str::to_string),
        }),
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(bytes));
    })
}

fn assert_same_request(stream: &str, units: &[Unit]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (sdk, (ours, signed), (cbor, cbor_signed)) = runtime.block_on(async {
        (
            by_the_sdk(stream, units).await,
            prepared(WireFormat::Json, stream, units).await,
            prepared(WireFormat::Cbor, stream, units).await,
        )
    });
    assert!(!sdk.body.is_empty(), "the SDK's request was not captured");
    assert_eq!(json(&ours.body), json(&sdk.body));
    assert_eq!(ours.content_type, sdk.content_type);
    // The same document in CBOR, the data as bytes (base64 here only to compare).
    assert_eq!(as_json(&cbor.body), json(&sdk.body));
    assert_eq!(cbor.content_type.as_deref(), Some(cbor::CONTENT_TYPE));
    for (sent, signed) in [(ours, signed), (cbor, cbor_signed)] {
        assert_eq!(sent.length, Some(sent.body.len().to_string()));
        // What was signed is what is sent: the body was in place before signing.
        assert_eq!(signed.body, sent.body);
        assert_eq!(signed.length, sent.length);
        assert_eq!(signed.content_type, sent.content_type);
    }
}

#[test]
fn the_prepared_body_is_the_request_the_sdk_writes() {
    let units = vec![
        single("1", br#"{"id":1}"#.to_vec()),
        single("key \"quoted\" \\ and \u{1}", vec![0, 255, 1, 2, 3]),
        single("ünïcødé ✓", Vec::new()),
        aggregate(
            "agg",
            Some("170141183460469231731687303715884105728"),
            vec![7; 1000],
        ),
        aggregate("agg2", None, vec![0xf3, 0x89, 0x9a, 0xc2]),
    ];
    assert_same_request("my-stream", &units);
    assert_same_request("a \"stream\"", &units[..1]);
}

#[test]
fn an_empty_request_is_an_empty_list() {
    let body = put_records("s", &[]);
    assert_eq!(&body[..], br#"{"StreamName":"s","Records":[]}"#);
    let cbor = prepare(WireFormat::Cbor, "s", &[]).bytes;
    assert_eq!(as_json(&cbor), json(&body));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn any_records_make_the_request_the_sdk_writes(
        records in proptest::collection::vec(
            (any::<String>(), proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()),
            0..12,
        ),
    ) {
        let units: Vec<Unit> = records
            .into_iter()
            .map(|(key, data, hashed)| match hashed {
                true => aggregate(&key, Some("42"), data),
                false => single(&key, data),
            })
            .collect();
        assert_same_request("stream-1", &units);
    }
}

#[test]
fn a_cbor_slot_turns_to_json_once_and_a_json_slot_stays() {
    let wire = Wire::new(WireFormat::Cbor);
    assert_eq!(wire.format(), WireFormat::Cbor);
    assert!(wire.fall_back(), "the first fall back is told");
    assert_eq!(wire.format(), WireFormat::Json);
    assert!(!wire.fall_back(), "and only the first");
    let json = Wire::new(WireFormat::Json);
    assert!(!json.fall_back());
    assert_eq!(json.format(), WireFormat::Json);
}
