//! The checkpoint keys of a slot: `checkpoint`, `checkpoint_parameter`,
//! `checkpoint_interval_secs`, `accept_checkpoint_gap`.
//!
//! Owns their defaults and value rules (SSM parameter-name syntax). It never talks
//! to SSM.

use super::file::{SlotFile, Value};
use super::value::{number, text};
use super::yaml::Node;
use super::{
    CheckpointConfig, ConfigError, Source, DEFAULT_CHECKPOINT, DEFAULT_CHECKPOINT_INTERVAL_SECS,
    MAX_CHECKPOINT_INTERVAL_SECS, SSM_MAX_PARAMETER_NAME_LEN,
};

/// Environment variable that moves the default checkpoint parameters from
/// `/pg-cdc-to-kinesis/<slot>/checkpoint` to `<prefix>/<slot>/checkpoint`. The CDK
/// stack sets `/pg-cdc-to-kinesis/<stack>`, so two stacks in one account never write
/// each other's checkpoints; `checkpoint_parameter` still wins.
pub const ENV_CHECKPOINT_PREFIX: &str = "PG_CDC_CHECKPOINT_PREFIX";

/// `accept_checkpoint_gap` default: a gap stops the slot.
pub const DEFAULT_ACCEPT_CHECKPOINT_GAP: bool = false;

/// The parameter name when `checkpoint_parameter` is unset: `/pg-cdc-to-kinesis/<slot>/checkpoint`.
fn default_parameter(slot: &str) -> String {
    format!("/pg-cdc-to-kinesis/{slot}/checkpoint")
}

pub(super) fn build(
    src: &Source<'_>,
    slot: &str,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<CheckpointConfig, ConfigError> {
    let flag = |key: &str, v: &Option<Value>, default: bool| src.flag(v, &place(key), default);
    let enabled = flag("checkpoint", &raw.checkpoint, DEFAULT_CHECKPOINT)?;
    // `backfill`: accept the gap and backfill every streamed table.
    let backfill_gap = matches!(&raw.accept_checkpoint_gap,
        Some(v) if matches!(&v.value, Node::Str(s) if s == "backfill"));
    let accept_gap = backfill_gap
        || match &raw.accept_checkpoint_gap {
            Some(v) if !matches!(v.value, Node::Bool(_)) => {
                return Err(src.at(
                    v,
                    format!(
                        "{}: must be `true`, `false` or `backfill`, got {}; `backfill` starts a \
                         slot past the gap and puts every streamed table's rows on the stream again",
                        place("accept_checkpoint_gap"),
                        v.value.show()
                    ),
                ))
            }
            v => flag("accept_checkpoint_gap", v, DEFAULT_ACCEPT_CHECKPOINT_GAP)?,
        };
    let interval_secs = match &raw.checkpoint_interval_secs {
        None => DEFAULT_CHECKPOINT_INTERVAL_SECS,
        Some(v) => number(
            src,
            v,
            &place("checkpoint_interval_secs"),
            1,
            MAX_CHECKPOINT_INTERVAL_SECS,
        )?,
    };
    let parameter = match &raw.checkpoint_parameter {
        None => match lookup(ENV_CHECKPOINT_PREFIX).filter(|p| !p.trim().is_empty()) {
            None => default_parameter(slot),
            Some(prefix) => {
                let name = format!("{}/{slot}/checkpoint", prefix.trim_end_matches('/'));
                if !valid_parameter_name(&name) {
                    return Err(ConfigError::Invalid(format!(
                        "{}: environment variable {ENV_CHECKPOINT_PREFIX}={prefix:?} makes the \
                         invalid SSM parameter name `{name}`; use a path that starts with `/` \
                         followed by letters, digits, `_`, `.`, `-` or `/`, e.g. \
                         `/pg-cdc-to-kinesis/MyStack`",
                        place("checkpoint_parameter")
                    )));
                }
                name
            }
        },
        Some(v) => {
            let name = text(src, v, &place("checkpoint_parameter"), lookup)?;
            if !valid_parameter_name(&name) {
                return Err(src.at(
                    v,
                    format!(
                        "{}: invalid SSM parameter name `{name}`; use a path that starts with `/` \
                         followed by letters, digits, `_`, `.`, `-` or `/`, at most \
                         {SSM_MAX_PARAMETER_NAME_LEN} characters, e.g. `/pg-cdc-to-kinesis/{slot}/checkpoint`",
                        place("checkpoint_parameter")
                    ),
                ));
            }
            name
        }
    };
    Ok(CheckpointConfig {
        enabled,
        parameter,
        interval_secs,
        accept_gap,
        backfill_gap,
    })
}

/// SSM's rules for a hierarchical name; `aws`/`ssm` prefixes are reserved by AWS.
fn valid_parameter_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    name.len() > 1
        && name.len() <= SSM_MAX_PARAMETER_NAME_LEN
        && name.starts_with('/')
        && !name.ends_with('/')
        && !name.contains("//")
        && !lower.starts_with("/aws")
        && !lower.starts_with("/ssm")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn parameter(env: &[(&str, &str)], extra: &str) -> Result<String, ConfigError> {
        let text = format!(
            "replication_slots:\n  - s1:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: k\n{extra}"
        );
        let lookup = |name: &str| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        };
        Config::from_text(Path::new("c.yml"), &text, &lookup)
            .map(|c| c.slots[0].checkpoint.parameter.clone())
    }

    #[test]
    fn checkpoint_prefix_from_the_environment_moves_only_the_default() {
        assert_eq!(
            parameter(&[], "").unwrap(),
            "/pg-cdc-to-kinesis/s1/checkpoint"
        );
        let stack = [(ENV_CHECKPOINT_PREFIX, "/pg-cdc-to-kinesis/Prod/")];
        assert_eq!(
            parameter(&stack, "").unwrap(),
            "/pg-cdc-to-kinesis/Prod/s1/checkpoint"
        );
        assert_eq!(
            parameter(&stack, "      checkpoint_parameter: /mine/s1\n").unwrap(),
            "/mine/s1"
        );
        let err = parameter(&[(ENV_CHECKPOINT_PREFIX, "no-slash")], "")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PG_CDC_CHECKPOINT_PREFIX") && err.contains("invalid SSM parameter name"),
            "{err}"
        );
    }

    #[test]
    fn parameter_names_follow_ssm_rules() {
        for ok in ["/pg-cdc-to-kinesis/s/checkpoint", "/a", "/prod/cdc_1/x.y"] {
            assert!(valid_parameter_name(ok), "{ok}");
        }
        for bad in [
            "", "/", "noslash", "/a//b", "/a/", "/a b", "/aws/x", "/ssm/x",
        ] {
            assert!(!valid_parameter_name(bad), "{bad}");
        }
    }
}
