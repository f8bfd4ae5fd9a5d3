//! The `match` glob of a `tables:` entry: `schema.table`, either part a glob where `*`
//! matches any run of characters, and what wal2json can say of it.
//!
//! Owns the glob syntax, its config check (a glob that can never match a table is
//! refused with file:line:col and a fix) and the sure answers the entry rules ask of
//! it (covers, may overlap). It never matches a table at run time on its own:
//! `record::tables` does, with [`TableGlob`].

use super::file::Value;
use super::yaml::Node;
use super::{ConfigError, Source};

/// PostgreSQL names are at most NAMEDATALEN - 1 = 63 bytes: a longer literal part
/// can never name a table.
const PG_MAX_NAME_BYTES: usize = 63;

/// One part of a `match` (schema or table): a glob where `*` matches any run of
/// characters (`\*` a literal star).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameGlob {
    /// Literal pieces between the stars, unescaped; one piece = no star.
    pieces: Vec<String>,
}

impl NameGlob {
    pub(super) fn parse(part: &str) -> NameGlob {
        let mut pieces = vec![String::new()];
        let mut chars = part.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    if let (Some(n), Some(last)) = (chars.next(), pieces.last_mut()) {
                        last.push(n);
                    }
                }
                '*' => pieces.push(String::new()),
                c => {
                    if let Some(last) = pieces.last_mut() {
                        last.push(c);
                    }
                }
            }
        }
        NameGlob { pieces }
    }

    /// The name, when the part has no `*`.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// `*` alone: every name.
    pub fn is_any(&self) -> bool {
        self.pieces.len() == 2 && self.pieces.iter().all(String::is_empty)
    }

    /// The fewest bytes a matching name has.
    fn min_len(&self) -> usize {
        self.pieces.iter().map(String::len).sum()
    }

    pub fn matches(&self, name: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return name.is_empty(),
        };
        let Some(last) = rest.last() else {
            return name == first;
        };
        let Some(mut tail) = name.strip_prefix(first.as_str()) else {
            return false;
        };
        for middle in &rest[..rest.len() - 1] {
            match tail.find(middle.as_str()) {
                Some(at) => tail = &tail[at + middle.len()..],
                None => return false,
            }
        }
        tail.len() >= last.len() && tail.ends_with(last.as_str())
    }

    /// Every name this glob matches, `other` matches too (a sure answer only; a
    /// `false` may be conservative).
    fn covers(&self, other: &NameGlob) -> bool {
        self.is_any() || self == other || other.literal().is_some_and(|name| self.matches(name))
    }
}

/// A `match` value: `schema.table`, either part a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableGlob {
    pub schema: NameGlob,
    pub table: NameGlob,
    /// As written, for messages.
    pub text: String,
}

impl TableGlob {
    /// `schema.table` as `match` takes it (unchecked: the config check is `table_glob`).
    pub fn parse(text: &str) -> Option<TableGlob> {
        let (schema, table) = split_first_dot(text)?;
        Some(TableGlob {
            schema: NameGlob::parse(schema),
            table: NameGlob::parse(table),
            text: text.to_string(),
        })
    }

    pub fn matches(&self, schema: &str, table: &str) -> bool {
        self.schema.matches(schema) && self.table.matches(table)
    }

    pub(super) fn covers(&self, other: &TableGlob) -> bool {
        self.schema.covers(&other.schema) && self.table.covers(&other.table)
    }

    /// The same tables as one wal2json `add-tables`/`filter-tables` entry, when
    /// wal2json can say it: literal names, or `*` as a whole part.
    pub fn wal2json_entry(&self) -> Option<String> {
        let part = |g: &NameGlob| -> Option<String> {
            if g.is_any() {
                return Some("*".into());
            }
            let name = g.literal()?;
            // wal2json trims blanks around an entry: such a name cannot be said.
            if name.trim() != name {
                return None;
            }
            let mut out = String::with_capacity(name.len());
            for c in name.chars() {
                if matches!(c, ',' | '.' | '\\' | '*' | ' ' | '\'') {
                    out.push('\\');
                }
                out.push(c);
            }
            Some(out)
        };
        Some(format!("{}.{}", part(&self.schema)?, part(&self.table)?))
    }
}

/// `schema.table`, split at the first `.` not escaped by `\`; `*` in either part is
/// a glob. Quoted PostgreSQL names may hold any character, so only what certainly
/// names no table is refused: no `.`, an empty part, a part longer than 63 bytes.
pub(super) fn table_glob(
    src: &Source<'_>,
    v: &Value,
    place: &str,
) -> Result<TableGlob, ConfigError> {
    let Node::Str(written) = &v.value else {
        return Err(src.at(
            v,
            format!(
                "{place}: expected `schema.table` (either part may use `*`), found {}",
                v.value.show()
            ),
        ));
    };
    let fix = "write `schema.table`, e.g. `public.orders`, `public.*` or `*.audit_*` (escape \
               a `.` or `*` that is part of a name with `\\`)";
    let (schema, table) = split_first_dot(written).ok_or_else(|| {
        src.at(
            v,
            format!("{place}: `{written}` can never match a table: there is no `.` between schema and table; {fix}"),
        )
    })?;
    for (part, what) in [(schema, "schema"), (table, "table")] {
        if part.is_empty() {
            return Err(src.at(
                v,
                format!(
                    "{place}: `{written}` can never match a table: the {what} name is empty; {fix}"
                ),
            ));
        }
        let glob = NameGlob::parse(part);
        if glob.min_len() > PG_MAX_NAME_BYTES {
            return Err(src.at(
                v,
                format!(
                    "{place}: `{written}` can never match a table: the {what} name is longer than \
                     PostgreSQL's {PG_MAX_NAME_BYTES} bytes"
                ),
            ));
        }
    }
    Ok(TableGlob {
        schema: NameGlob::parse(schema),
        table: NameGlob::parse(table),
        text: written.clone(),
    })
}

/// `value` split at its first `.` not escaped by `\` (escapes kept).
fn split_first_dot(value: &str) -> Option<(&str, &str)> {
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '.' => return Some((&value[..i], &value[i + 1..])),
            _ => {}
        }
    }
    None
}

/// Whether some table could match both globs (`true` when unsure).
pub(super) fn may_overlap(a: &TableGlob, b: &TableGlob) -> bool {
    let part = |x: &NameGlob, y: &NameGlob| match (x.literal(), y.literal()) {
        (Some(l), _) => y.matches(l),
        (_, Some(l)) => x.matches(l),
        _ => true,
    };
    part(&a.schema, &b.schema) && part(&a.table, &b.table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn glob(s: &str) -> NameGlob {
        NameGlob::parse(s)
    }

    #[test]
    fn globs_match_prefixes_suffixes_and_middles() {
        assert!(glob("*").matches("") && glob("*").matches("orders"));
        assert!(glob("audit_*").matches("audit_log") && !glob("audit_*").matches("xaudit_log"));
        assert!(glob("*_log").matches("audit_log") && !glob("*_log").matches("audit_logs"));
        assert!(glob("a*b*c").matches("abc") && glob("a*b*c").matches("axxbyyc"));
        assert!(!glob("a*b*c").matches("acb") && !glob("ab*ab").matches("aba"));
        assert!(glob(r"a\*").matches("a*") && !glob(r"a\*").matches("ab"));
        assert_eq!(glob("orders").literal(), Some("orders"));
    }

    #[test]
    fn wal2json_can_say_literals_and_whole_part_stars_only() {
        let g = |s: &str, t: &str| TableGlob {
            schema: glob(s),
            table: glob(t),
            text: String::new(),
        };
        assert_eq!(
            g("public", "orders").wal2json_entry().as_deref(),
            Some("public.orders")
        );
        assert_eq!(g("*", "t").wal2json_entry().as_deref(), Some("*.t"));
        assert_eq!(
            g("my.s", "a,b").wal2json_entry().as_deref(),
            Some(r"my\.s.a\,b")
        );
        assert_eq!(g("public", "audit_*").wal2json_entry(), None);
        let written = g("my.s", "a,b*").wal2json_entry();
        assert_eq!(
            written, None,
            "a star inside a name part is a glob, not said"
        );
    }

    #[test]
    fn overlap_is_ruled_out_only_when_certain() {
        let g = |s: &str, t: &str| TableGlob {
            schema: glob(s),
            table: glob(t),
            text: String::new(),
        };
        assert!(!may_overlap(
            &g("public", "orders"),
            &g("public", "audit_*")
        ));
        assert!(may_overlap(&g("public", "orders"), &g("public", "*")));
        assert!(may_overlap(&g("*", "a*"), &g("public", "*b")));
        assert!(!may_overlap(&g("sales", "*"), &g("public", "*")));
    }
}
