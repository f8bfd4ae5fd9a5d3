//! The wal2json plugin options sent on `START_REPLICATION`.
//!
//! Owns which options this tool adds to the user's (see the table in the
//! [`decode`](super) module doc) and which record format follows from them. It
//! never rejects an unknown option name (that is `config`'s job) and never
//! overrides a user's explicit choice, with one exception: `include-transaction`
//! under format-version 2, without which no transaction would ever end.

use super::FormatVersion;
use crate::config::{option_value, pg_bool};

/// The logical-message prefix of the streamer's signals ([`crate::signal`]): kept
/// in the stream of messages whatever the user's message-prefix options say. It lives
/// here, below `signal`, because the decoder's options need it and `signal` writes
/// messages through `source`, which sits above `decode`.
pub const SIGNAL_PREFIX: &str = "pg-cdc-to-kinesis-signal";

/// Options whose values the decoder relies on, added when the user did not set
/// them. Both formats: xids and commit timestamps for `Begin`, LSNs for
/// `txn_lsn`/`Change::lsn` (v1: `nextlsn`; v2: `lsn`/`nextlsn`), primary-key
/// names for `Change::pk`.
const ADDED_BOTH: [(&str, &str); 4] = [
    ("include-xids", "true"),
    ("include-timestamp", "true"),
    ("include-lsn", "true"),
    ("include-pk", "true"),
];

/// Format-version 1 writes one document per transaction; without chunks the
/// server builds a whole transaction in one buffer (capped at 1 GB, where
/// wal2json fails), and so would we. Chunks give one message per row.
const ADDED_V1: [(&str, &str); 1] = [("write-in-chunks", "true")];

/// wal2json's own default is format-version 1; this tool defaults to 2.
const FORMAT_VERSION: &str = "format-version";
const INCLUDE_TRANSACTION: &str = "include-transaction";
/// Message prefix lists: the streamer's signals must get through either.
const ADD_MSG_PREFIXES: &str = "add-msg-prefixes";
const FILTER_MSG_PREFIXES: &str = "filter-msg-prefixes";

/// A user's wal2json option that this tool cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OptionError {
    #[error("wal2json option format-version = {0:?} is not supported: use 1 or 2 (2 is the default and streams transactions of any size)")]
    FormatVersion(String),
    #[error("wal2json option {name} = {value:?} is not a boolean: use true or false")]
    NotBoolean { name: String, value: String },
    #[error("wal2json option include-transaction = {0:?} hides transaction boundaries, so no change could ever be acknowledged: remove the option (it defaults to true)")]
    TransactionOff(String),
}

/// Check the user's options for values this tool cannot work with, returning the
/// format in effect. Meant for config validation; [`effective_options`] never fails
/// and repairs what this rejects.
pub fn check_options(user: &[(String, String)]) -> Result<FormatVersion, OptionError> {
    let format = match option_value(user, FORMAT_VERSION) {
        None => FormatVersion::V2,
        Some(v) => match v.trim() {
            "1" => FormatVersion::V1,
            "2" => FormatVersion::V2,
            _ => return Err(OptionError::FormatVersion(v.to_string())),
        },
    };
    for (name, value) in user {
        let is_bool = name.starts_with("include-")
            || name == "pretty-print"
            || name == "write-in-chunks"
            || name == "numeric-data-types-as-string";
        if is_bool && pg_bool(value).is_none() {
            return Err(OptionError::NotBoolean {
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    if format == FormatVersion::V2 {
        if let Some(v) = option_value(user, INCLUDE_TRANSACTION) {
            if pg_bool(v) == Some(false) {
                return Err(OptionError::TransactionOff(v.to_string()));
            }
        }
    }
    Ok(format)
}

/// The options sent to wal2json: the user's, plus those the record format needs
/// (only where the user did not set them), and the format in effect.
///
/// Under format-version 2 a false `include-transaction` is replaced by `true` (and
/// logged): without `B`/`C` records the decoder never sees a commit, so nothing
/// could be acknowledged and the slot would retain WAL forever.
pub fn effective_options(user: &[(String, String)]) -> (Vec<(String, String)>, FormatVersion) {
    // An unparseable format-version is left for wal2json to reject at
    // START_REPLICATION with its own message; `check_options` reports it earlier.
    let format = match option_value(user, FORMAT_VERSION).map(str::trim) {
        Some("1") => FormatVersion::V1,
        _ => FormatVersion::V2,
    };
    let mut out: Vec<(String, String)> = Vec::with_capacity(user.len() + 6);
    for (name, value) in user {
        if format == FormatVersion::V2
            && name == INCLUDE_TRANSACTION
            && pg_bool(value) == Some(false)
        {
            tracing::warn!(option = INCLUDE_TRANSACTION, value = %value,
                "overriding wal2json option: format-version 2 needs transaction boundaries to acknowledge progress");
            out.push((name.clone(), "true".to_string()));
        } else if name == ADD_MSG_PREFIXES && !prefixes(value).any(|p| p == SIGNAL_PREFIX) {
            // The user chose which messages to see: ours must stay among them.
            out.push((name.clone(), format!("{value},{SIGNAL_PREFIX}")));
        } else if name == FILTER_MSG_PREFIXES && prefixes(value).any(|p| p == SIGNAL_PREFIX) {
            tracing::warn!(option = FILTER_MSG_PREFIXES, value = %value,
                "not filtering out {SIGNAL_PREFIX:?}: the streamer's signals (backfill, restart) use it");
            let kept: Vec<&str> = prefixes(value).filter(|p| *p != SIGNAL_PREFIX).collect();
            out.push((name.clone(), kept.join(",")));
        } else {
            out.push((name.clone(), value.clone()));
        }
    }
    let mut add = |name: &str, value: &str| {
        if option_value(user, name).is_none() {
            out.push((name.to_string(), value.to_string()));
        }
    };
    add(FORMAT_VERSION, "2");
    for (name, value) in ADDED_BOTH {
        add(name, value);
    }
    match format {
        FormatVersion::V1 => ADDED_V1.iter().for_each(|(n, v)| add(n, v)),
        FormatVersion::V2 => add(INCLUDE_TRANSACTION, "true"),
    }
    (out, format)
}

/// A wal2json prefix list: comma-separated.
fn prefixes(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// Whether wal2json prints numbers as JSON strings (`numeric-data-types-as-string`),
/// by PostgreSQL's boolean rules; a backfill must print them alike.
pub fn numbers_as_strings(options: &[(String, String)]) -> bool {
    option_value(options, "numeric-data-types-as-string").and_then(pg_bool) == Some(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn get<'a>(o: &'a [(String, String)], name: &str) -> Option<&'a str> {
        option_value(o, name)
    }

    #[test]
    fn numbers_as_strings_reads_the_last_value_as_postgresql_does() {
        assert!(!numbers_as_strings(&[]));
        assert!(numbers_as_strings(&opts(&[(
            "numeric-data-types-as-string",
            " On "
        )])));
        assert!(!numbers_as_strings(&opts(&[
            ("numeric-data-types-as-string", "1"),
            ("numeric-data-types-as-string", "off"),
        ])));
    }

    #[test]
    fn signal_prefix_stays_in_the_users_message_filters() {
        let (out, _) = effective_options(&opts(&[("add-msg-prefixes", "app,audit")]));
        assert_eq!(
            option_value(&out, "add-msg-prefixes"),
            Some("app,audit,pg-cdc-to-kinesis-signal")
        );
        let (out, _) =
            effective_options(&opts(&[("add-msg-prefixes", "pg-cdc-to-kinesis-signal")]));
        assert_eq!(
            option_value(&out, "add-msg-prefixes"),
            Some("pg-cdc-to-kinesis-signal")
        );
        let (out, _) = effective_options(&opts(&[(
            "filter-msg-prefixes",
            "app, pg-cdc-to-kinesis-signal",
        )]));
        assert_eq!(option_value(&out, "filter-msg-prefixes"), Some("app"));
        let (out, _) = effective_options(&[]);
        assert_eq!(
            option_value(&out, "add-msg-prefixes"),
            None,
            "no list: every message is seen"
        );
    }

    #[test]
    fn defaults_to_v2_with_everything_the_decoder_needs() {
        let (o, f) = effective_options(&[]);
        assert_eq!(f, FormatVersion::V2);
        for (name, value) in [
            ("format-version", "2"),
            ("include-xids", "true"),
            ("include-timestamp", "true"),
            ("include-lsn", "true"),
            ("include-pk", "true"),
            ("include-transaction", "true"),
        ] {
            assert_eq!(get(&o, name), Some(value), "{name}");
        }
        assert_eq!(get(&o, "write-in-chunks"), None);
        assert_eq!(o.len(), 6);
    }

    #[test]
    fn v1_gets_chunks_and_keeps_user_choices() {
        let user = opts(&[
            ("format-version", "1"),
            ("include-timestamp", "false"),
            ("add-tables", "public.t"),
        ]);
        let (o, f) = effective_options(&user);
        assert_eq!(f, FormatVersion::V1);
        assert_eq!(get(&o, "include-timestamp"), Some("false"));
        assert_eq!(get(&o, "write-in-chunks"), Some("true"));
        assert_eq!(get(&o, "add-tables"), Some("public.t"));
        assert_eq!(get(&o, "include-transaction"), None);
        assert_eq!(o.iter().filter(|(n, _)| n == "format-version").count(), 1);
        let (o, _) = effective_options(&opts(&[("format-version", "1"), ("write-in-chunks", "0")]));
        assert_eq!(get(&o, "write-in-chunks"), Some("0"));
    }

    #[test]
    fn v2_forces_transaction_boundaries_and_check_rejects_them_off() {
        let user = opts(&[("include-transaction", "off")]);
        let (o, f) = effective_options(&user);
        assert_eq!(f, FormatVersion::V2);
        assert_eq!(get(&o, "include-transaction"), Some("true"));
        assert_eq!(
            check_options(&user),
            Err(OptionError::TransactionOff("off".into()))
        );
        // Under v1 the option means nothing, so it is left alone.
        let user = opts(&[("format-version", "1"), ("include-transaction", "f")]);
        assert_eq!(
            get(&effective_options(&user).0, "include-transaction"),
            Some("f")
        );
        assert_eq!(check_options(&user), Ok(FormatVersion::V1));
    }

    #[test]
    fn check_rejects_bad_values() {
        assert_eq!(
            check_options(&opts(&[("format-version", "3")])),
            Err(OptionError::FormatVersion("3".into()))
        );
        assert!(matches!(
            check_options(&opts(&[("include-pk", "maybe")])),
            Err(OptionError::NotBoolean { .. })
        ));
        assert_eq!(
            check_options(&opts(&[("format-version", " 2 "), ("include-pk", "Yes")])),
            Ok(FormatVersion::V2)
        );
        assert_eq!(check_options(&[]), Ok(FormatVersion::V2));
    }

    #[test]
    fn parses_booleans_like_postgres() {
        for t in ["true", "T", "tr", "yes", "y", "on", "1", " TRUE "] {
            assert_eq!(pg_bool(t), Some(true), "{t}");
        }
        for f in ["false", "f", "no", "n", "off", "of", "0"] {
            assert_eq!(pg_bool(f), Some(false), "{f}");
        }
        for x in ["", "o", "2", "truex", "nope"] {
            assert_eq!(pg_bool(x), None, "{x}");
        }
    }
}
