//! A parsed slot ([`SlotFile`]) → a [`SlotConfig`]: defaults, `${ENV}` expansion,
//! required keys and value limits.
//!
//! Owns the slot's assembly: which keys are required, the defaults, and which reader
//! each key goes through (the value rules themselves, such as ranges, Kinesis stream
//! names and partition-key forms, are in `value`). It never checks key names (the
//! tree check already did) and never echoes a password.

use super::file::{SlotFile, Value};
use super::libpq_env::LibpqEnv;
use super::validate::SlotSite;
use super::value::{number, options, partition_key, port, region, stream_name, text, Lookup};
use super::*;

pub(super) fn build(
    src: &Source<'_>,
    site: &SlotSite,
    raw: SlotFile,
    lookup: Lookup<'_>,
) -> Result<SlotConfig, ConfigError> {
    let slot = site.name.as_str();
    let place = |key: &str| format!("replication slot `{slot}`, key `{key}`");
    let missing = |key: &str, also: &str| {
        src.error(
            Some(&site.at),
            format!(
                "replication slot `{slot}`: missing required key `{key}`; add `{key}: ...` \
                 to the slot, or to the database it merges with `<<: *anchor`{also}"
            ),
        )
    };
    let required = |key: &str, v: &Option<Value>| -> Result<Value, ConfigError> {
        v.clone().ok_or_else(|| missing(key, ""))
    };
    let env = LibpqEnv::read(lookup);
    let env_error =
        |msg: String| src.error(Some(&site.at), format!("replication slot `{slot}`: {msg}"));
    let non_empty = |key: &str, v: &Value| -> Result<String, ConfigError> {
        let s = text(src, v, &place(key), lookup)?;
        if s.trim().is_empty() {
            return Err(src.at(v, format!("{}: must not be empty", place(key))));
        }
        Ok(s)
    };

    let secret = match &raw.secret {
        None => None,
        Some(v) => Some(non_empty("secret", v)?),
    };
    // A `secret` may supply the connection keys; an empty string means "from the secret".
    // Without one, libpq's variable fills a key the config leaves out.
    let connection_key = |key: &str, v: &Option<Value>, var: &str, from_env: &Option<String>| match (
        v, &secret, from_env,
    ) {
        (None, Some(_), _) => Ok(String::new()),
        (None, None, Some(value)) => Ok(value.clone()),
        (None, None, None) => Err(missing(
            key,
            &format!(
                ", or set the environment variable {var} (or name a Secrets Manager \
                     `secret` that holds it)"
            ),
        )),
        (Some(v), _, _) => non_empty(key, v),
    };
    let host = connection_key("host", &raw.host, "PGHOST", &env.host)?;
    let user = connection_key("user", &raw.user, "PGUSER", &env.user)?;
    let db_name = connection_key("db_name", &raw.db_name, "PGDATABASE", &env.db_name)?;
    let kns_stream = stream_name(
        src,
        &required("kns_stream", &raw.kns_stream)?,
        &place("kns_stream"),
        lookup,
    )?;

    let port = match &raw.port {
        None if secret.is_none() => env.port().map_err(env_error)?.unwrap_or(DEFAULT_PORT),
        None => DEFAULT_PORT,
        Some(v) => port(src, v, &place("port"), lookup)?,
    };
    // An empty password (e.g. `${PGPASSWORD:-}`) means "no password": trust auth.
    let password = match &raw.password {
        None => None,
        Some(v) => Some(text(src, v, &place("password"), lookup)?)
            .filter(|p| !p.is_empty())
            .map(Secret::new),
    };
    let region = match &raw.region {
        None => None,
        Some(v) => Some(region(src, v, &place("region"), lookup)?),
    };
    let mut options = match &raw.options {
        None => Vec::new(),
        Some(v) => options(src, v, &place("options"), lookup)?,
    };
    let tables = super::tables_keys::build(src, &raw, &place, lookup)?;
    let derived = super::tables_filters::wal2json_filters(src, &raw, &tables, &options, &place)?;
    options.extend(derived);
    let format = super::format_keys::build(src, &raw, &place, &options)?;
    let partition_key = match &raw.partition_key {
        None => PartitionKey::default(),
        Some(v) => partition_key(src, v, &place("partition_key"))?,
    };

    let num = |key: &str, v: &Option<Value>, default: u64, min: u64, max: u64| match v {
        None => Ok(default),
        Some(v) => number(src, v, &place(key), min, max),
    };
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let max_bytes = to_usize(num(
        "batch_max_bytes",
        &raw.batch_max_bytes,
        DEFAULT_BATCH_MAX_BYTES as u64,
        1,
        KINESIS_MAX_BYTES_PER_REQUEST as u64,
    )?);
    let max_record_bytes = match &raw.max_record_bytes {
        None => None,
        Some(v) => {
            let n = number(src, v, &place("max_record_bytes"), 1, max_bytes as u64)?;
            Some(to_usize(n))
        }
    };
    let delivery = super::delivery_keys::build(src, &raw, &place)?;
    let batch = BatchConfig {
        max_records: to_usize(num(
            "batch_max_records",
            &raw.batch_max_records,
            DEFAULT_BATCH_MAX_RECORDS as u64,
            1,
            KINESIS_MAX_RECORDS_PER_REQUEST as u64,
        )?),
        max_bytes,
        max_record_bytes,
        max_in_flight: to_usize(num(
            "max_in_flight",
            &raw.max_in_flight,
            DEFAULT_MAX_IN_FLIGHT as u64,
            1,
            MAX_IN_FLIGHT_LIMIT as u64,
        )?),
        linger_ms: num(
            "linger_ms",
            &raw.linger_ms,
            DEFAULT_LINGER_MS,
            0,
            MAX_LINGER_MS,
        )?,
        aggregation: delivery.aggregation,
        wire_format: delivery.wire_format,
        shard_records_per_sec: delivery.shard_records_per_sec,
        shard_bytes_per_sec: delivery.shard_bytes_per_sec,
        // Set from memory_budget_bytes once every slot is known.
        buffer_bytes: super::delivery_keys::MIN_SLOT_BUFFER_BYTES,
    };
    let queue_capacity = to_usize(num(
        "queue_capacity",
        &raw.queue_capacity,
        DEFAULT_QUEUE_CAPACITY as u64,
        1,
        MAX_QUEUE_CAPACITY as u64,
    )?);
    let status_interval_secs = num(
        "status_interval_secs",
        &raw.status_interval_secs,
        DEFAULT_STATUS_INTERVAL_SECS,
        1,
        MAX_STATUS_INTERVAL_SECS,
    )?;
    let create_slot = src.flag(&raw.create_slot, &place("create_slot"), DEFAULT_CREATE_SLOT)?;

    let tls = super::tls_keys::build(
        src,
        &raw,
        &place,
        lookup,
        &host,
        password.is_some(),
        (
            match raw.sslmode {
                None => env.sslmode().map_err(env_error)?,
                Some(_) => None,
            },
            match raw.sslrootcert {
                None => env.sslrootcert().map_err(env_error)?,
                Some(_) => None,
            },
        ),
    )?;
    // libpq's order for a password the config leaves out (`password: ""` is a choice
    // of no password): PGPASSWORD, then the password file. A `secret` or an IAM token
    // supplies it otherwise.
    let password = match (&raw.password, &secret, tls.iam_auth) {
        (None, None, false) => env.password(&host, port, &db_name, &user).map(Secret::new),
        _ => password,
    };
    let checkpoint = super::checkpoint_keys::build(src, slot, &raw, &place, lookup)?;

    Ok(SlotConfig {
        name: site.name.clone(),
        host,
        port,
        user,
        password,
        db_name,
        options,
        kns_stream,
        region,
        partition_key,
        batch,
        queue_capacity,
        status_interval_secs,
        create_slot,
        sslmode: tls.sslmode,
        sslrootcert: tls.sslrootcert,
        secret,
        iam_auth: tls.iam_auth,
        hostaddr: tls.hostaddr,
        channel_binding: tls.channel_binding,
        require_auth: tls.require_auth,
        iam_token_to_unverified_server: tls.iam_token_to_unverified_server,
        checkpoint,
        heartbeat_interval_secs: super::ops_keys::heartbeat(src, &raw, &place)?,
        snapshot: super::snapshot_keys::build(src, &raw, &place)?,
        oversize: super::oversize_keys::build(src, &raw, &place, lookup)?,
        tables,
        format,
        shape: super::shape_keys::build(src, &raw, &place)?,
    })
}
