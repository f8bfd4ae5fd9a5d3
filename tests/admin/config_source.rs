//! The admin Lambda's config read from an SSM parameter instead of a file.

use pg_cdc_to_kinesis::admin;

use crate::support::moto;
use crate::support::pg::{self, unique_name};

use super::*;

#[tokio::test]
async fn the_config_can_come_from_an_ssm_parameter() {
    let pg = pg::shared();
    let slot = unique_name("adm_ssm");
    let case = admin_case(pg, &[&slot]);
    let moto = moto::shared();
    let ssm = aws_sdk_ssm::Client::new(&moto.sdk_config());
    let name = format!("/pg-cdc-to-kinesis-config/test/{}", unique_name("cfg"));
    let put = |value: String| {
        let (ssm, name) = (ssm.clone(), name.clone());
        async move {
            ssm.put_parameter()
                .name(name)
                .value(value)
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send()
                .await
                .expect("put config parameter")
        }
    };
    put(std::fs::read_to_string(case.path()).unwrap()).await;
    let source = admin::ConfigSource::SsmParameter(name.clone());
    let config = source
        .load(&moto.sdk_config())
        .await
        .expect("load from SSM");
    assert_eq!(config.slots.len(), 1);
    assert_eq!(config.slots[0].name, slot);
    assert_eq!(config.slots[0].port, pg.port);

    // A mistake in the parameter is reported like one in a file, naming the parameter.
    put("replication_slots:\n  - x:\n      kns_strem: s\n".into()).await;
    let err = source
        .load(&moto.sdk_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("pg-cdc-to-kinesis-config-test-cfg"), "{err}");
    assert!(err.contains("kns_strem"), "{err}");

    let missing = admin::ConfigSource::SsmParameter(format!("{name}-missing"));
    let err = missing
        .load(&moto.sdk_config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ssm:GetParameter"), "{err}");
}
