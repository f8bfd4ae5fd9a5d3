//! A parsed slot ([`SlotFile`]) → a [`SlotConfig`]: defaults, `${ENV}` expansion,
//! required keys and value limits.
//!
//! Owns the value rules (ranges, Kinesis stream names, partition-key forms). It never
//! checks key names (the tree check already did) and never echoes a password.

use super::env::expand;
use super::file::{SlotFile, Value};
use super::libpq_env::LibpqEnv;
use super::validate::SlotSite;
use super::yaml::Node;
use super::*;

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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

/// A scalar as text with `${ENV}` expanded; a number or boolean as written
/// (`password: 0123` is `0123`, not `123`).
pub(super) fn text(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    lookup: Lookup<'_>,
) -> Result<String, ConfigError> {
    let raw = v.value.scalar_text().ok_or_else(|| {
        src.at(
            v,
            format!(
                "{place}: expected a single text value, found {}",
                v.value.kind()
            ),
        )
    })?;
    match &v.value {
        Node::Str(_) => expand(&raw, lookup).map_err(|e| src.at(v, format!("{place}: {e}"))),
        _ => Ok(super::yaml::written(src.text, v).map_or(raw, str::to_string)),
    }
}

/// A whole number in `min..=max`.
pub(super) fn number(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    match &v.value {
        Node::Int(n) => match u64::try_from(*n) {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(src.at(
                v,
                format!("{place}: {n} is out of range; use a value from {min} to {max}"),
            )),
        },
        other => Err(src.at(
            v,
            format!(
                "{place}: expected a whole number from {min} to {max}, got {}",
                other.show()
            ),
        )),
    }
}

fn port(src: &Source<'_>, v: &Value, place: &str, lookup: Lookup<'_>) -> Result<u16, ConfigError> {
    let n = match &v.value {
        Node::Int(n) => Some(*n),
        Node::Str(_) => {
            let s = text(src, v, place, lookup)?;
            s.trim().parse::<i128>().ok()
        }
        _ => None,
    };
    match n.and_then(|n| u16::try_from(n).ok()).filter(|p| *p > 0) {
        Some(p) => Ok(p),
        None => Err(src.at(
            v,
            format!(
                "{place}: expected a TCP port from 1 to 65535, got {} (after ${{ENV}} expansion)",
                v.value.show()
            ),
        )),
    }
}

/// Kinesis stream names: 1..=128 of `[a-zA-Z0-9_.-]`.
pub(super) fn stream_name(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    lookup: Lookup<'_>,
) -> Result<String, ConfigError> {
    let name = text(src, v, place, lookup)?;
    let valid = !name.is_empty()
        && name.len() <= KINESIS_MAX_STREAM_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(name)
    } else {
        Err(src.at(
            v,
            format!(
                "{place}: invalid Kinesis stream name `{name}`; use 1 to {KINESIS_MAX_STREAM_NAME_LEN} \
                 letters, digits, `_`, `.` or `-` (the stream's name, not its ARN)"
            ),
        ))
    }
}

fn region(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    lookup: Lookup<'_>,
) -> Result<String, ConfigError> {
    let region = text(src, v, place, lookup)?;
    let valid = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(region)
    } else {
        Err(src.at(
            v,
            format!(
                "{place}: invalid AWS region `{region}`; use a region code such as `eu-west-1`, \
                 or remove the key to use the AWS default chain"
            ),
        ))
    }
}

/// wal2json options in file order, values as text with `${ENV}` expanded (booleans
/// as `true`/`false`). Names were checked on the tree; `format-version` is checked
/// here, after expansion.
fn options(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    lookup: Lookup<'_>,
) -> Result<Vec<(String, String)>, ConfigError> {
    let Node::Map(entries) = &v.value else {
        return Err(src.at(
            v,
            format!(
                "{place}: expected a mapping of wal2json options, found {}",
                v.value.kind()
            ),
        ));
    };
    let mut out = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let (Some(name), Some(_)) = (key.value.scalar_text(), value.value.scalar_text()) else {
            return Err(src.at(
                value,
                format!("{place}: each option needs a name and a scalar value"),
            ));
        };
        let text = match &value.value {
            Node::Str(_) => text(src, value, &format!("{place}, option `{name}`"), lookup)?,
            other => other.scalar_text().unwrap_or_default(),
        };
        if name == "format-version" && text != "1" && text != "2" {
            return Err(src.at(
                value,
                format!("{place}: `format-version` must be 1 or 2, got `{text}`"),
            ));
        }
        out.push((name, text));
    }
    Ok(out)
}

pub(super) fn partition_key(
    src: &Source<'_>,
    v: &Value,
    place: &str,
) -> Result<PartitionKey, ConfigError> {
    let usage = "use `primary_key`, `table`, `{columns: [col_a, col_b]}` or `{fixed: \"key\"}`";
    match &v.value {
        Node::Str(s) if s == "primary_key" => Ok(PartitionKey::PrimaryKey),
        Node::Str(s) if s == "table" => Ok(PartitionKey::Table),
        Node::Map(entries) => match entries.as_slice() {
            [(k, val)] if k.value == Node::Str("columns".into()) => columns(src, val, place),
            [(k, val)] if k.value == Node::Str("fixed".into()) => {
                let key = val.value.scalar_text().unwrap_or_default();
                if (1..=KINESIS_MAX_PARTITION_KEY_BYTES).contains(&key.len()) {
                    Ok(PartitionKey::Fixed(key))
                } else {
                    Err(src.at(
                        val,
                        format!(
                            "{place}: `fixed` needs a text key of 1 to \
                             {KINESIS_MAX_PARTITION_KEY_BYTES} bytes (UTF-8), got {}",
                            val.value.show()
                        ),
                    ))
                }
            }
            _ => Err(src.at(v, format!("{place}: unrecognised form; {usage}"))),
        },
        other => Err(src.at(
            v,
            format!("{place}: unrecognised value {}; {usage}", other.show()),
        )),
    }
}

fn columns(src: &Source<'_>, v: &Value, place: &str) -> Result<PartitionKey, ConfigError> {
    let Node::Seq(items) = &v.value else {
        return Err(src.at(
            v,
            format!("{place}: `columns` must be a list of column names, e.g. `[tenant_id]`"),
        ));
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match &item.value {
            Node::Str(s) if !s.is_empty() && !names.contains(s) => names.push(s.clone()),
            other => {
                return Err(src.at(
                    item,
                    format!(
                        "{place}: column names must be distinct, non-empty text, got {}",
                        other.show()
                    ),
                ))
            }
        }
    }
    if names.is_empty() {
        return Err(src.at(
            v,
            format!("{place}: `columns` needs at least one column name"),
        ));
    }
    Ok(PartitionKey::Columns(names))
}
