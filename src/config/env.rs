//! `${VAR}` / `${VAR:-default}` expansion in config string values, and `$${` for a
//! literal `${`.
//!
//! Owns only the expansion syntax. It reads variables through a lookup function so
//! tests never touch the process environment; it never decides which keys expand
//! (the caller does) and never logs values, which may be passwords. Its errors name
//! a position in the value, never the text around it, which may be part of a
//! password.

use std::fmt;

/// Why a value could not be expanded. The caller adds file, slot, key and location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum EnvError {
    /// `${NAME}` with `NAME` unset and no `:-default`.
    Unset(String),
    /// `${` without a closing `}`, at this character of the value (1-based).
    Unterminated { at: usize },
    /// `${...}` whose name is not `[A-Za-z_][A-Za-z0-9_]*`, at this character.
    BadName { at: usize },
}

const SYNTAX: &str = "write `${NAME}` or `${NAME:-default}`, or `$${` for a literal `${`";

impl fmt::Display for EnvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvError::Unset(name) => write!(
                f,
                "environment variable `{name}` is not set; export it, or give a default \
                 with `${{{name}:-value}}`"
            ),
            EnvError::Unterminated { at } => {
                write!(
                    f,
                    "the `${{` at character {at} has no closing `}}`; {SYNTAX}"
                )
            }
            EnvError::BadName { at } => write!(
                f,
                "the `${{...}}` at character {at} is not a valid variable reference: names \
                 are letters, digits and `_`, not starting with a digit; {SYNTAX}"
            ),
        }
    }
}

/// Replaces every `${NAME}` and `${NAME:-default}` in `value`, and every `$${` by a
/// literal `${` (read left to right, so `$${A}` is the text `${A}`).
///
/// Shell semantics for `:-`: the default applies when the variable is unset *or empty*.
/// A `$` not followed by `{` is kept as is, so passwords containing `$` (even `$$`)
/// need no escaping; only `${` does.
pub(super) fn expand(
    value: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let from_dollar = &rest[dollar..];
        if let Some(tail) = from_dollar.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
            continue;
        }
        let Some(after) = from_dollar.strip_prefix("${") else {
            out.push('$');
            rest = &from_dollar[1..];
            continue;
        };
        // 1-based character position of this `${`, for messages.
        let at = value[..value.len() - from_dollar.len()].chars().count() + 1;
        let end = after.find('}').ok_or(EnvError::Unterminated { at })?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !is_var_name(name) {
            return Err(EnvError::BadName { at });
        }
        match (lookup(name), default) {
            (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(EnvError::Unset(name.to_string())),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("db.internal".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_set_variables_and_keeps_surrounding_text() {
        assert_eq!(expand("pg-${HOST}:1", &env).unwrap(), "pg-db.internal:1");
        assert_eq!(
            expand("${HOST}${HOST}", &env).unwrap(),
            "db.internal".repeat(2)
        );
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(expand("${NOPE:-5432}", &env).unwrap(), "5432");
        assert_eq!(expand("${EMPTY:-x}", &env).unwrap(), "x");
        assert_eq!(expand("${HOST:-x}", &env).unwrap(), "db.internal");
        assert_eq!(expand("${NOPE:-}", &env).unwrap(), "");
        // Without `:-`, a set-but-empty variable is simply empty.
        assert_eq!(expand("${EMPTY}", &env).unwrap(), "");
    }

    #[test]
    fn dollar_without_brace_is_literal() {
        assert_eq!(expand("pa$$w0rd$", &env).unwrap(), "pa$$w0rd$");
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(expand("${NOPE}", &env), Err(EnvError::Unset("NOPE".into())));
        assert_eq!(
            expand("a${HOST", &env),
            Err(EnvError::Unterminated { at: 2 })
        );
        assert_eq!(expand("${1X}", &env), Err(EnvError::BadName { at: 1 }));
        assert_eq!(expand("é${}", &env), Err(EnvError::BadName { at: 2 }));
        assert!(EnvError::Unset("NOPE".into())
            .to_string()
            .contains("`NOPE` is not set"));
    }

    #[test]
    fn double_dollar_brace_is_a_literal_dollar_brace() {
        assert_eq!(expand("pa$${HOST}", &env).unwrap(), "pa${HOST}");
        assert_eq!(expand("$${", &env).unwrap(), "${");
        assert_eq!(
            expand("$${HOST}-${HOST}", &env).unwrap(),
            "${HOST}-db.internal"
        );
        // `$$` before anything but `{` stays as written.
        assert_eq!(expand("a$$b$", &env).unwrap(), "a$$b$");
        assert_eq!(expand("$$$${x", &env).unwrap(), "$$${x");
    }

    #[test]
    fn errors_never_echo_the_value() {
        for bad in ["s3cr3t${pa:ss}word", "s3cr3t${pa ss", "s3cr3t${}pa:ss"] {
            let msg = expand(bad, &env).unwrap_err().to_string();
            for fragment in ["s3cr3t", "pa:ss", "pa ss", "word"] {
                assert!(!msg.contains(fragment), "{bad:?} -> {msg}");
            }
            assert!(
                msg.contains("character 7") && msg.contains("`$${`"),
                "{msg}"
            );
        }
    }
}
