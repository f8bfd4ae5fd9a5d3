//! The oversize keys of a slot: `oversize`, `oversize_bucket`, `oversize_prefix`.
//!
//! Owns what happens to a row whose record is larger than the stream takes (stop
//! the slot, or put the record into S3 and a claim check on the stream), the S3
//! bucket-name rules and the key-prefix rules. It never talks to S3.

use super::file::{SlotFile, Value};
use super::value::text;
use super::yaml::Node;
use super::{ConfigError, Source};

/// `oversize_prefix` default: the objects of every slot under one folder.
pub const DEFAULT_OVERSIZE_PREFIX: &str = "pg-cdc-to-kinesis/";
/// `oversize_prefix` upper bound, in bytes: S3 keys are at most 1024 bytes, and the
/// slot name, commit LSN and sequence number take up to about 110 of them.
pub const MAX_OVERSIZE_PREFIX_BYTES: usize = 512;

/// What a record larger than the stream's record limit does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OversizeMode {
    /// Stop the slot with an error naming the row (nothing is dropped).
    #[default]
    Fail,
    /// Put the full record into S3 and a claim-check record on the stream in its place.
    S3,
}

impl OversizeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            OversizeMode::Fail => "fail",
            OversizeMode::S3 => "s3",
        }
    }
}

/// A slot's oversize settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizeConfig {
    /// The slot's mode; a `tables:` entry may override it per table.
    pub mode: OversizeMode,
    /// The bucket that takes the records; required when any table uses `s3`.
    pub bucket: Option<String>,
    /// Prepended to every object key (`<prefix><slot>/<commit_lsn>/<seq>.json`).
    pub prefix: String,
}

impl Default for OversizeConfig {
    fn default() -> Self {
        OversizeConfig {
            mode: OversizeMode::Fail,
            bucket: None,
            prefix: DEFAULT_OVERSIZE_PREFIX.to_string(),
        }
    }
}

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<OversizeConfig, ConfigError> {
    let mode = match &raw.oversize {
        None => OversizeMode::default(),
        Some(v) => mode(src, v, &place("oversize"))?,
    };
    let bucket = match &raw.oversize_bucket {
        None => None,
        Some(v) => {
            let name = text(src, v, &place("oversize_bucket"), lookup)?;
            if let Err(why) = check_bucket_name(&name) {
                return Err(src.at(
                    v,
                    format!(
                        "{}: invalid S3 bucket name `{name}`: {why}; use 3 to 63 lower-case \
                         letters, digits, `.` and `-`, starting and ending with a letter or \
                         digit (the bucket's name, not its ARN or URL)",
                        place("oversize_bucket")
                    ),
                ));
            }
            Some(name)
        }
    };
    let prefix = match &raw.oversize_prefix {
        None => DEFAULT_OVERSIZE_PREFIX.to_string(),
        Some(v) => {
            let prefix = text(src, v, &place("oversize_prefix"), lookup)?;
            if let Err(why) = check_prefix(&prefix) {
                return Err(src.at(
                    v,
                    format!(
                        "{}: invalid S3 key prefix {prefix:?}: {why}; e.g. `cdc/oversize/`",
                        place("oversize_prefix")
                    ),
                ));
            }
            prefix
        }
    };
    if let (OversizeMode::S3, None, Some(at)) = (mode, &bucket, &raw.oversize) {
        return Err(src.at(
            at,
            format!(
                "{}: `s3` needs a bucket: add `oversize_bucket: my-bucket` to the slot (the \
                 CDK app creates one: see its `oversizeBucket` setting), or use `oversize: fail`",
                place("oversize")
            ),
        ));
    }
    Ok(OversizeConfig {
        mode,
        bucket,
        prefix,
    })
}

/// `fail` or `s3`: the slot's key, and the same value in a `tables:` entry.
pub(super) fn mode(src: &Source<'_>, v: &Value, place: &str) -> Result<OversizeMode, ConfigError> {
    match &v.value {
        Node::Str(s) if s == "fail" => Ok(OversizeMode::Fail),
        Node::Str(s) if s == "s3" => Ok(OversizeMode::S3),
        other => Err(src.at(
            v,
            format!(
                "{place}: expected `fail` or `s3`, found {}; `s3` puts a record larger than \
                 the stream takes into `oversize_bucket` and a claim check on the stream",
                other.show()
            ),
        )),
    }
}

/// S3's rules for general purpose bucket names.
fn check_bucket_name(name: &str) -> Result<(), &'static str> {
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return Err("it must be 3 to 63 characters long");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
    {
        return Err("only lower-case letters, digits, `.` and `-` are allowed");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(bytes[0]) || !edge(bytes[bytes.len() - 1]) {
        return Err("it must start and end with a letter or digit");
    }
    if name.contains("..") || name.contains(".-") || name.contains("-.") {
        return Err("`.` may not be next to another `.` or a `-`");
    }
    if name.split('.').count() == 4 && name.split('.').all(|p| p.parse::<u8>().is_ok()) {
        return Err("it must not look like an IP address");
    }
    for reserved in ["xn--", "sthree-", "amzn-s3-demo-"] {
        if name.starts_with(reserved) {
            return Err("that prefix is reserved by S3");
        }
    }
    for reserved in ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"] {
        if name.ends_with(reserved) {
            return Err("that suffix is reserved by S3");
        }
    }
    Ok(())
}

/// A prefix every object key starts with: printable, not absolute, short enough.
fn check_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.len() > MAX_OVERSIZE_PREFIX_BYTES {
        return Err("it must be at most 512 bytes");
    }
    if prefix.starts_with('/') {
        return Err("S3 keys do not start with `/`");
    }
    if prefix.contains("//") {
        return Err("an empty folder name (`//`) makes keys hard to list");
    }
    if prefix.chars().any(|c| c.is_control()) {
        return Err("control characters are not allowed");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn load(extra: &str, env: &[(&str, &str)]) -> Result<OversizeConfig, String> {
        let text = format!(
            "replication_slots:\n  - s1:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n{extra}"
        );
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        Config::from_text(Path::new("c.yml"), &text, &lookup)
            .map(|c| c.slots[0].oversize.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn oversize_defaults_to_fail_with_the_default_prefix() {
        assert_eq!(load("", &[]).unwrap(), OversizeConfig::default());
    }

    #[test]
    fn oversize_s3_takes_bucket_and_prefix_with_env_expansion() {
        let c = load(
            "      oversize: s3\n      oversize_bucket: ${BUCKET}\n      oversize_prefix: cdc/big/\n",
            &[("BUCKET", "my-claims.bucket")],
        )
        .unwrap();
        assert_eq!(c.mode, OversizeMode::S3);
        assert_eq!(c.bucket.as_deref(), Some("my-claims.bucket"));
        assert_eq!(c.prefix, "cdc/big/");
    }

    #[test]
    fn oversize_s3_without_a_bucket_is_an_error_at_the_key() {
        let err = load("      oversize: s3\n", &[]).unwrap_err();
        assert!(
            err.contains("c.yml:7:17") && err.contains("oversize_bucket"),
            "{err}"
        );
    }

    #[test]
    fn oversize_rejects_unknown_modes_bad_buckets_and_bad_prefixes() {
        let err = load("      oversize: drop\n", &[]).unwrap_err();
        assert!(
            err.contains("c.yml:7:17") && err.contains("`fail` or `s3`"),
            "{err}"
        );
        let err = load("      oversize_bucket: My_Bucket\n", &[]).unwrap_err();
        assert!(
            err.contains("c.yml:7:24") && err.contains("invalid S3 bucket name"),
            "{err}"
        );
        let err = load("      oversize_prefix: /abs/\n", &[]).unwrap_err();
        assert!(err.contains("c.yml:7:24") && err.contains("`/`"), "{err}");
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for ok in ["abc", "my-bucket", "a.b-c.d", "123bucket", &"a".repeat(63)] {
            assert_eq!(check_bucket_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(64),
            "Upper",
            "under_score",
            "-start",
            "end-",
            "a..b",
            "a.-b",
            "192.168.1.1",
            "xn--abc",
            "sthree-x",
            "bucket-s3alias",
            "bucket--ol-s3",
            "s3://bucket",
            "arn:aws:s3:::b",
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prefixes_are_relative_printable_and_short() {
        for ok in ["", "cdc/", "claims-", "a/b/c/"] {
            assert_eq!(check_prefix(ok), Ok(()), "{ok}");
        }
        for bad in ["/x/", "a//b", "a\nb", &"p".repeat(513)] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
