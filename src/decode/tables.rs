//! The table lists of wal2json's `add-tables` and `filter-tables` options, read as
//! wal2json 2.5 reads them (`string_to_SelectTable`).
//!
//! Owns the list syntax only: entries separated by `,` (blanks around them ignored),
//! each `schema.table` split at the first unescaped `.`, `*` as a whole part for
//! "every schema" or "every table", and `\` escaping the next character. It never
//! looks tables up (that is `check`) and never changes an option's value.

/// One entry of a table list; `None` stands for `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePattern {
    pub schema: Option<String>,
    pub table: Option<String>,
}

impl std::fmt::Display for TablePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let part = |p: &Option<String>| p.clone().unwrap_or_else(|| "*".into());
        write!(f, "{}.{}", part(&self.schema), part(&self.table))
    }
}

/// The wal2json options whose values are table lists.
pub const TABLE_LIST_OPTIONS: [&str; 2] = ["add-tables", "filter-tables"];

/// The entries of a table list in order. An entry wal2json refuses (empty, or
/// without a `.` between schema and table) is `Err` with the entry as written;
/// wal2json then refuses the whole option when the slot starts streaming.
pub fn table_patterns(value: &str) -> Vec<Result<TablePattern, String>> {
    if value.trim().is_empty() {
        return Vec::new();
    }
    split_unescaped(value, ',')
        .into_iter()
        .map(|entry| {
            let entry = entry.trim();
            match split_once_unescaped(entry, '.') {
                Some((schema, table)) if !entry.is_empty() => Ok(TablePattern {
                    schema: (schema != "*").then(|| unescape(schema)),
                    table: (table != "*").then(|| unescape(table)),
                }),
                _ => Err(entry.to_string()),
            }
        })
        .collect()
}

/// `value` split at each `sep` not preceded by `\` (escapes kept).
fn split_unescaped(value: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == sep => {
                parts.push(&value[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts
}

fn split_once_unescaped(value: &str, sep: char) -> Option<(&str, &str)> {
    match split_unescaped(value, sep).first() {
        Some(first) if first.len() < value.len() => {
            Some((first, &value[first.len() + sep.len_utf8()..]))
        }
        _ => None,
    }
}

fn unescape(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    let mut chars = part.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// Which tables a slot decodes, from its `add-tables` and `filter-tables` options
/// (wal2json: a table in `filter-tables` is skipped; with `add-tables` set, only
/// the tables it names are written). Entries wal2json refuses match nothing here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableFilter {
    add: Vec<TablePattern>,
    filter: Vec<TablePattern>,
}

impl TableFilter {
    /// The filter of a slot's wal2json options (other options are ignored).
    pub fn from_options(options: &[(String, String)]) -> TableFilter {
        let mut f = TableFilter::default();
        for (name, value) in options {
            let patterns = table_patterns(value).into_iter().flatten().collect();
            match name.as_str() {
                "add-tables" => f.add = patterns,
                "filter-tables" => f.filter = patterns,
                _ => {}
            }
        }
        f
    }

    /// Whether wal2json writes the changes of `schema.table`.
    pub fn decodes(&self, schema: &str, table: &str) -> bool {
        let matches = |p: &TablePattern| {
            p.schema.as_deref().is_none_or(|s| s == schema)
                && p.table.as_deref().is_none_or(|t| t == table)
        };
        !self.filter.iter().any(matches) && (self.add.is_empty() || self.add.iter().any(matches))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(schema: Option<&str>, table: Option<&str>) -> Result<TablePattern, String> {
        Ok(TablePattern {
            schema: schema.map(str::to_string),
            table: table.map(str::to_string),
        })
    }

    #[test]
    fn splits_entries_and_wildcards_like_wal2json() {
        assert_eq!(
            table_patterns(" public.orders , *.audit,sales.* "),
            [
                pattern(Some("public"), Some("orders")),
                pattern(None, Some("audit")),
                pattern(Some("sales"), None),
            ]
        );
        assert_eq!(table_patterns(""), []);
    }

    #[test]
    fn escapes_keep_separators_and_stars_as_names() {
        assert_eq!(
            table_patterns(r"my\.schema.a\,b,public.\*,public.x.y"),
            [
                pattern(Some("my.schema"), Some("a,b")),
                pattern(Some("public"), Some("*")),
                pattern(Some("public"), Some("x.y")),
            ]
        );
    }

    #[test]
    fn entries_wal2json_refuses_are_errors() {
        assert_eq!(
            table_patterns("orders,public.t,"),
            [
                Err("orders".to_string()),
                pattern(Some("public"), Some("t")),
                Err(String::new()),
            ]
        );
    }

    fn filter(pairs: &[(&str, &str)]) -> TableFilter {
        let options: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TableFilter::from_options(&options)
    }

    #[test]
    fn a_filter_decodes_what_wal2json_writes() {
        assert!(filter(&[]).decodes("public", "t"));
        assert!(filter(&[("add-tables", "")]).decodes("public", "t"));
        let f = filter(&[("add-tables", "public.orders, *.audit ,sales.*")]);
        assert!(
            f.decodes("public", "orders") && f.decodes("x", "audit") && f.decodes("sales", "y")
        );
        assert!(!f.decodes("public", "other") && !f.decodes("salesx", "y"));
        let both = filter(&[
            ("add-tables", "public.*"),
            ("filter-tables", "public.secrets"),
        ]);
        assert!(both.decodes("public", "orders") && !both.decodes("public", "secrets"));
        let only_filter = filter(&[("filter-tables", "*.log")]);
        assert!(!only_filter.decodes("x", "log") && only_filter.decodes("x", "orders"));
    }
}
