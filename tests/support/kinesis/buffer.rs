//! kinesalite's GetRecords answer for records put in CBOR, read back as Kinesis
//! answers. kinesalite keeps a CBOR record's data as a Node.js Buffer and writes it into
//! a JSON answer as `{"type":"Buffer","data":[byte, …]}`, which the SDK refuses. This
//! interceptor puts a reader in front of the operation's own deserializer that writes
//! the base64 text of those bytes in their place, as Kinesis sends data, so a test
//! reads exactly the bytes kinesalite decoded from the request.

use std::sync::LazyLock;

use aws_sdk_kinesis::config::http::HttpResponse;
use aws_sdk_kinesis::config::interceptors::BeforeSerializationInterceptorContextMut;
use aws_sdk_kinesis::config::{
    ConfigBag, FrozenLayer, Intercept, RuntimeComponents, RuntimePlugin,
};
use aws_sdk_kinesis::error::BoxError;
use aws_sdk_kinesis::operation::get_records::GetRecords;
use aws_smithy_runtime_api::client::interceptors::context::{Error, Output};
use aws_smithy_runtime_api::client::orchestrator::OrchestratorError;
use aws_smithy_runtime_api::client::ser_de::{DeserializeResponse, SharedResponseDeserializer};
use aws_smithy_types::body::SdkBody;
use base64::Engine;
use serde_json::Value;

/// The `GetRecords` operation's own configuration, with its deserializer.
static SDK: LazyLock<Option<FrozenLayer>> = LazyLock::new(|| GetRecords::new().config());

#[derive(Debug)]
pub struct BufferData;

impl Intercept for BufferData {
    fn name(&self) -> &'static str {
        "KinesaliteBufferData"
    }

    fn modify_before_serialization(
        &self,
        _: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let sdk = SDK
            .as_ref()
            .and_then(|layer| layer.load::<SharedResponseDeserializer>())
            .ok_or("GetRecords has no response deserializer")?;
        cfg.interceptor_state()
            .store_put(SharedResponseDeserializer::new(Reader(sdk)));
        Ok(())
    }
}

#[derive(Debug)]
struct Reader(&'static SharedResponseDeserializer);

impl DeserializeResponse for Reader {
    fn deserialize_streaming_with_config(
        &self,
        response: &mut HttpResponse,
        cfg: &ConfigBag,
    ) -> Option<Result<Output, OrchestratorError<Error>>> {
        self.0.deserialize_streaming_with_config(response, cfg)
    }

    fn deserialize_nonstreaming_with_config(
        &self,
        response: &HttpResponse,
        cfg: &ConfigBag,
    ) -> Result<Output, OrchestratorError<Error>> {
        match with_base64_data(response).map_err(OrchestratorError::other)? {
            Some(fixed) => self.0.deserialize_nonstreaming_with_config(&fixed, cfg),
            None => self.0.deserialize_nonstreaming_with_config(response, cfg),
        }
    }
}

/// The answer with each Buffer's bytes as base64 text; `None` if it has no Buffer.
fn with_base64_data(response: &HttpResponse) -> Result<Option<HttpResponse>, BoxError> {
    let Some(Ok(mut doc)) = response.body().bytes().map(serde_json::from_slice::<Value>) else {
        return Ok(None);
    };
    let mut changed = false;
    let records = doc.get_mut("Records").and_then(Value::as_array_mut);
    for data in records
        .into_iter()
        .flatten()
        .filter_map(|r| r.get_mut("Data"))
    {
        if data.get("type").and_then(Value::as_str) != Some("Buffer") {
            continue;
        }
        let bytes = data
            .get("data")
            .and_then(Value::as_array)
            .ok_or("a Buffer without its data")?
            .iter()
            .map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or("a Buffer byte that is not one")?;
        *data = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
        changed = true;
    }
    if !changed {
        return Ok(None);
    }
    let mut fixed = HttpResponse::new(response.status(), SdkBody::from(serde_json::to_vec(&doc)?));
    for (name, value) in response.headers() {
        if !name.eq_ignore_ascii_case("content-length") {
            fixed
                .headers_mut()
                .append(name.to_string(), value.to_string());
        }
    }
    Ok(Some(fixed))
}
