//! YAML text → a located value tree ([`Node`]), with parser errors turned into
//! operator-facing messages.
//!
//! Owns the serde-saphyr options (strict booleans, no snippets) and the wording of
//! syntax, anchor and duplicate-key errors. It never interprets keys: what a key
//! means is decided in `validate` and `slot`.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::{ConfigError, Source};

/// One `key: value` of a mapping, both located.
pub(super) type Entry = (Spanned<Node>, Spanned<Node>);

/// One YAML node, merges (`<<:`) and aliases already resolved by the parser.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    /// Entries in file order; merged entries come after the mapping's own entries.
    Map(Vec<Entry>),
}

impl Node {
    /// What the user wrote, in words, for "expected X, got Y" messages.
    pub(super) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "nothing (an empty value)",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "a whole number",
            Node::Float(_) => "a decimal number",
            Node::Str(_) => "text",
            Node::Seq(_) => "a list",
            Node::Map(_) => "a mapping",
        }
    }

    /// A scalar as text: booleans as `true`/`false`, numbers in decimal. `None` for
    /// null, lists and mappings.
    pub(super) fn scalar_text(&self) -> Option<String> {
        match self {
            Node::Bool(b) => Some(b.to_string()),
            Node::Int(i) => Some(i.to_string()),
            Node::Float(x) => Some(x.to_string()),
            Node::Str(s) => Some(s.clone()),
            Node::Null | Node::Seq(_) | Node::Map(_) => None,
        }
    }

    /// A short rendering for messages ("got `abc`").
    pub(super) fn show(&self) -> String {
        match self.scalar_text() {
            Some(t) => format!("`{t}`"),
            None => self.kind().to_string(),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
        // Beyond i128 is beyond every limit we check; keep the digits for the message.
        Ok(i128::try_from(v).map_or_else(|_| Node::Str(v.to_string()), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_char<E>(self, v: char) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<Node>>()? {
            let value = map.next_value::<Spanned<Node>>()?;
            entries.push((key, value));
        }
        Ok(Node::Map(entries))
    }
}

/// A number or boolean scalar's text exactly as written in the file (`0123`, `1e3`,
/// `True`), for keys that are text whatever they look like, such as a password:
/// re-rendering the parsed value would turn `0123` into `123`. Read back through the
/// value's byte span (where it was defined, for merged and aliased values), and used
/// only if that text parses to the same value. `None` for other nodes.
pub(super) fn written<'t>(text: &'t str, v: &Spanned<Node>) -> Option<&'t str> {
    if !matches!(v.value, Node::Bool(_) | Node::Int(_) | Node::Float(_)) {
        return None;
    }
    let span = v.defined.span();
    let start = usize::try_from(span.byte_offset()?).ok()?;
    let len = usize::try_from(span.byte_len()?).ok()?;
    let written = text.get(start..start.checked_add(len)?)?.trim();
    let reparsed: Node = serde_saphyr::from_str_with_options(written, options()).ok()?;
    (reparsed.scalar_text() == v.value.scalar_text()).then_some(written)
}

fn options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        // Only true/True/TRUE/false/...: `yes`, `on`, `n` stay text, as PyYAML-era
        // configs meant them in wal2json option values such as table names.
        strict_booleans: true,
        // We print `file:line:column: message` ourselves; snippets are multi-line.
        with_snippet: false,
    }
}

/// Parses the whole file into a located tree. `Ok(None)` for an empty document.
pub(super) fn parse_tree(src: &Source<'_>) -> Result<Option<Spanned<Node>>, ConfigError> {
    serde_saphyr::from_str_with_options(src.text, options()).map_err(|e| parse_error(src, &e))
}

/// Parses the file into one of the documented `file` structs. Runs after
/// [`parse_tree`] and the tree checks, so errors here are unexpected backstops.
pub(super) fn parse_typed<T: de::DeserializeOwned>(src: &Source<'_>) -> Result<T, ConfigError> {
    serde_saphyr::from_str_with_options(src.text, options()).map_err(|e| parse_error(src, &e))
}

fn parse_error(src: &Source<'_>, err: &serde_saphyr::Error) -> ConfigError {
    let loc = err.location();
    match err.without_snippet() {
        serde_saphyr::Error::UnknownAnchor { .. } => {
            let name = loc
                .as_ref()
                .and_then(|l| alias_at(src.text, l))
                .unwrap_or_default();
            src.error(
                loc.as_ref(),
                format!(
                    "alias `*{name}` refers to an anchor that is not defined. Define it earlier \
                     in the file with `&{name}` (for example `- my_database: &{name}` under \
                     `databases:`); a plain value starting with `*`, such as a password, must \
                     be quoted"
                ),
            )
        }
        serde_saphyr::Error::DuplicateMappingKey { key, .. } => src.error(
            loc.as_ref(),
            format!(
                "duplicate key `{}` in one mapping; remove one of them (a key merged in with \
                 `<<:` may be overridden, but a key may not be written twice)",
                key.as_deref().unwrap_or("?")
            ),
        ),
        _ => {
            let mut msg = err.to_string();
            if let Some(l) = &loc {
                let suffix = format!(" at line {}, column {}", l.line(), l.column());
                if let Some(stripped) = msg.strip_suffix(&suffix) {
                    msg = stripped.to_string();
                }
            }
            src.error(
                loc.as_ref(),
                format!("invalid YAML: {msg}; check the indentation and quoting around this point"),
            )
        }
    }
}

/// The alias name written at `loc` (`*name`), read back from the source text because
/// the parser's error does not carry it.
fn alias_at(text: &str, loc: &Location) -> Option<String> {
    let line = text
        .lines()
        .nth(usize::try_from(loc.line()).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(loc.column()).ok()?.checked_sub(1)?;
    let rest: String = line.chars().skip(col).collect();
    let rest = rest.strip_prefix('*')?;
    let name: String = rest
        .chars()
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | '[' | ']' | '{' | '}'))
        .collect();
    (!name.is_empty()).then_some(name)
}
