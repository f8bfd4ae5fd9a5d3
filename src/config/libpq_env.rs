//! libpq's conventions for what a slot leaves out: the `PGHOST`, `PGPORT`, `PGUSER`,
//! `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE` and `PGSSLROOTCERT` variables, and the
//! password file (`PGPASSFILE`, else `~/.pgpass`).
//!
//! Owns reading them and libpq's precedence among them (a key in the config, then the
//! variable, then the password file for the password). It never overrides a key the
//! config sets, never expands `${…}` in a variable's value (it is taken as written),
//! and never logs a password or a password file's content.

use std::path::{Path, PathBuf};

use super::SslMode;

/// The variables libpq reads, each `None` when unset or empty (libpq ignores an empty
/// variable too).
#[derive(Debug, Default, Clone)]
pub(super) struct LibpqEnv {
    pub host: Option<String>,
    pub port: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub db_name: Option<String>,
    pub sslmode: Option<String>,
    pub sslrootcert: Option<String>,
    /// `PGPASSFILE`, else `$HOME/.pgpass`.
    pub passfile: Option<PathBuf>,
}

impl LibpqEnv {
    pub(super) fn read(lookup: &dyn Fn(&str) -> Option<String>) -> Self {
        let var = |name: &str| lookup(name).filter(|v| !v.is_empty());
        let passfile = var("PGPASSFILE")
            .map(PathBuf::from)
            .or_else(|| var("HOME").map(|home| Path::new(&home).join(".pgpass")));
        LibpqEnv {
            host: var("PGHOST"),
            port: var("PGPORT"),
            user: var("PGUSER"),
            password: var("PGPASSWORD"),
            db_name: var("PGDATABASE"),
            sslmode: var("PGSSLMODE"),
            sslrootcert: var("PGSSLROOTCERT"),
            passfile,
        }
    }

    /// `PGSSLMODE`, checked. The error says which variable is wrong.
    pub(super) fn sslmode(&self) -> Result<Option<SslMode>, String> {
        let Some(name) = &self.sslmode else {
            return Ok(None);
        };
        SslMode::parse(name.trim()).map(Some).ok_or_else(|| {
            format!(
                "environment variable PGSSLMODE: unknown mode `{name}`; use one of {}, or \
                 set `sslmode` in the config (the config wins)",
                super::tls::SSL_MODES.join(", ")
            )
        })
    }

    /// `PGSSLROOTCERT`, checked for being readable, as a configured path is.
    pub(super) fn sslrootcert(&self) -> Result<Option<PathBuf>, String> {
        let Some(path) = &self.sslrootcert else {
            return Ok(None);
        };
        let path = PathBuf::from(path);
        std::fs::metadata(&path).map_err(|e| {
            format!(
                "environment variable PGSSLROOTCERT: cannot read {}: {e}; give the path of a \
                 PEM file of CA certificates, or set `sslrootcert` in the config",
                path.display()
            )
        })?;
        Ok(Some(path))
    }

    /// `PGPORT`, checked.
    pub(super) fn port(&self) -> Result<Option<u16>, String> {
        let Some(port) = &self.port else {
            return Ok(None);
        };
        match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => Ok(Some(p)),
            _ => Err(format!(
                "environment variable PGPORT: `{port}` is not a port number (1-65535); fix \
                 it, or set `port` in the config (the config wins)"
            )),
        }
    }

    /// The password for a connection the config gives none for: `PGPASSWORD`, else
    /// the first matching line of the password file.
    pub(super) fn password(&self, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
        if let Some(p) = &self.password {
            return Some(p.clone());
        }
        let path = self.passfile.as_deref()?;
        let text = read_passfile(path)?;
        // libpq matches a Unix-socket directory (or no host) as `localhost`.
        let host = if host.is_empty() || host.starts_with('/') {
            "localhost"
        } else {
            host
        };
        passfile_lookup(&text, host, &port.to_string(), db, user)
    }
}

/// The password file's text, or `None` (with a warning, as libpq prints one) when it
/// is not a plain file or others may read it. A missing file is silent, as in libpq.
fn read_passfile(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        tracing::warn!(
            passfile = %path.display(),
            "password file {} is not a plain file; it is not used",
            path.display()
        );
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                passfile = %path.display(),
                "password file {} has group or world access, so it is not used; \
                 permissions should be u=rw (chmod 0600 {})",
                path.display(),
                path.display()
            );
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            tracing::warn!(passfile = %path.display(), "cannot read password file {}: {e}", path.display());
            None
        }
    }
}

/// The password of the first line `hostname:port:database:username:password` that
/// matches (`*` matches anything; `\:` and `\\` are a literal `:` and `\`). Lines
/// starting with `#` are comments, as in libpq.
fn passfile_lookup(text: &str, host: &str, port: &str, db: &str, user: &str) -> Option<String> {
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_fields(line);
        let [h, p, d, u, password] = fields.as_slice() else {
            continue;
        };
        let matches = |pattern: &String, value: &str| pattern == "*" || pattern == value;
        if matches(h, host) && matches(p, port) && matches(d, db) && matches(u, user) {
            return Some(password.clone());
        }
    }
    None
}

/// Splits on unescaped `:` into at most five fields (the password keeps any further
/// `:`), undoing `\` escapes.
fn split_fields(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let (Some(next), Some(f)) = (chars.next(), fields.last_mut()) {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# comment\n\
        db.example.com:5432:shop:cdc:first\n\
        *:5433:*:cdc:any\\:host\n\
        localhost:*:*:*:local\n\
        *:*:*:cdc:last:with:colons\n";

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let find = |h, p, d, u| passfile_lookup(FILE, h, p, d, u);
        assert_eq!(
            find("db.example.com", "5432", "shop", "cdc").as_deref(),
            Some("first")
        );
        assert_eq!(
            find("db.example.com", "5433", "crm", "cdc").as_deref(),
            Some("any:host")
        );
        assert_eq!(find("localhost", "1", "x", "y").as_deref(), Some("local"));
        assert_eq!(
            find("other", "5432", "shop", "cdc").as_deref(),
            Some("last:with:colons")
        );
        assert_eq!(find("other", "5432", "shop", "someone"), None);
    }

    #[test]
    fn pgpassword_comes_before_the_file_and_empty_variables_count_as_unset() {
        let env = LibpqEnv::read(&|name| match name {
            "PGPASSWORD" => Some("from-env".into()),
            "PGHOST" => Some(String::new()),
            "PGPASSFILE" => Some("/nonexistent/pgpass".into()),
            _ => None,
        });
        assert_eq!(env.host, None);
        assert_eq!(
            env.password("h", 5432, "d", "u").as_deref(),
            Some("from-env")
        );
    }

    #[test]
    fn bad_variables_are_named_in_the_error() {
        let env = LibpqEnv::read(&|name| match name {
            "PGPORT" => Some("54x".into()),
            "PGSSLMODE" => Some("verify_full".into()),
            _ => None,
        });
        assert!(env.port().unwrap_err().contains("PGPORT: `54x`"));
        assert!(env
            .sslmode()
            .unwrap_err()
            .contains("PGSSLMODE: unknown mode `verify_full`"));
    }

    #[cfg(unix)]
    #[test]
    fn a_password_file_others_can_read_is_ignored() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgpass");
        std::fs::write(&path, "*:*:*:*:secret\n").unwrap();
        let env = LibpqEnv {
            passfile: Some(path.clone()),
            ..LibpqEnv::default()
        };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(env.password("h", 5432, "d", "u"), None);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(env.password("h", 5432, "d", "u").as_deref(), Some("secret"));
    }
}
