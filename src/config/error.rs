//! [`ConfigError`] and the file being loaded ([`Source`]), which turns every problem
//! into one message naming the file and, where known, line:column.
//!
//! Owns the message shape (`path:line:column: what; fix`), never its wording: each
//! key's reader says what is wrong and how to fix it.

use std::fmt;
use std::path::{Path, PathBuf};

use super::yaml;

/// Something is wrong with the config file. The message names the file, the slot,
/// the key and, where the parser gives it, line:column, and says how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config file: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

/// The file being loaded, for messages that say where.
pub(super) struct Source<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Source<'_> {
    /// `path:line:column: msg` (or `path: msg` without a known location).
    pub(super) fn error(
        &self,
        at: Option<&serde_saphyr::Location>,
        msg: impl fmt::Display,
    ) -> ConfigError {
        let path = self.path.display();
        ConfigError::Invalid(match at {
            Some(l) if l.line() > 0 => format!("{path}:{}:{}: {msg}", l.line(), l.column()),
            _ => format!("{path}: {msg}"),
        })
    }

    /// An error about a value: points where it is used and, for a value merged in
    /// with `<<:` or aliased, also where it was written.
    pub(super) fn at<T>(
        &self,
        v: &serde_saphyr::Spanned<T>,
        msg: impl fmt::Display,
    ) -> ConfigError {
        let (r, d) = (&v.referenced, &v.defined);
        if d.line() > 0 && (d.line(), d.column()) != (r.line(), r.column()) {
            self.error(
                Some(r),
                format!(
                    "{msg} (value written at line {}, column {})",
                    d.line(),
                    d.column()
                ),
            )
        } else {
            self.error(Some(r), msg)
        }
    }

    /// A boolean key: `default` when absent, an error naming `place` for anything
    /// but `true`/`false`. The one place every on/off key is read.
    pub(super) fn flag(
        &self,
        v: &Option<serde_saphyr::Spanned<yaml::Node>>,
        place: &str,
        default: bool,
    ) -> Result<bool, ConfigError> {
        match v {
            None => Ok(default),
            Some(v) => match &v.value {
                yaml::Node::Bool(b) => Ok(*b),
                other => Err(self.at(
                    v,
                    format!("{place}: must be `true` or `false`, got {}", other.show()),
                )),
            },
        }
    }
}
