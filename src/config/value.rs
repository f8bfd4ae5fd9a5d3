//! The readers of one config value, shared by every key: text with `${ENV}` expanded
//! (numbers kept as written), whole numbers in a range, ports, Kinesis stream names,
//! AWS regions, wal2json options, partition-key forms and two-word choices.
//!
//! Owns each value's rule and its message (what, where, how to fix); it never knows
//! which key it reads, only the `place` the caller names.

use super::env::expand;
use super::file::Value;
use super::yaml::Node;
use super::*;

pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

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

/// One of two words, `a` or `b`, for an option with two settings; `hint` says what
/// the other setting does. `None` (the key left out) is `T::default()`.
pub(super) fn choice<T: Copy + Default>(
    src: &Source<'_>,
    v: &Option<Value>,
    place: &str,
    (a, b): ((&str, T), (&str, T)),
    hint: &str,
) -> Result<T, ConfigError> {
    let Some(v) = v else {
        return Ok(T::default());
    };
    match &v.value {
        Node::Str(s) if s == a.0 => Ok(a.1),
        Node::Str(s) if s == b.0 => Ok(b.1),
        other => Err(src.at(
            v,
            format!(
                "{place}: expected `{}` or `{}`, found {}; {hint}",
                a.0,
                b.0,
                other.show()
            ),
        )),
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

pub(super) fn port(
    src: &Source<'_>,
    v: &Value,
    place: &str,
    lookup: Lookup<'_>,
) -> Result<u16, ConfigError> {
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

pub(super) fn region(
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
pub(super) fn options(
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
