//! The table-shape keys of a slot: `unchanged_toast`, `unchanged_toast_placeholder`,
//! `partition_root`.
//!
//! Owns their defaults and value rules. It never talks to PostgreSQL: the catalog
//! lookups these keys turn on are `pipeline::catalog`'s.

use super::file::SlotFile;
use super::yaml::Node;
use super::{ConfigError, Source};

/// `unchanged_toast_placeholder` default: Debezium's `unavailable.value.placeholder`,
/// so consumers written for Debezium recognise it.
pub const DEFAULT_UNCHANGED_TOAST_PLACEHOLDER: &str = "__debezium_unavailable_value";
/// `unchanged_toast_placeholder` upper bound in bytes: it is repeated in every
/// record for every left-out column.
pub const MAX_UNCHANGED_TOAST_PLACEHOLDER_BYTES: usize = 256;

/// What an update record says about the TOASTed columns wal2json left out of it
/// (their value did not change and PostgreSQL did not log it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnchangedToast {
    /// Nothing: the columns are simply absent from `data` (the behaviour before 0.x).
    Omit,
    /// `"unchanged_toast": ["col", …]` names them (only when there is one).
    #[default]
    List,
    /// Each appears in `data` with the placeholder text as its value.
    Placeholder,
}

/// A slot's table-shape settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeConfig {
    pub unchanged_toast: UnchangedToast,
    /// The value of a left-out column under [`UnchangedToast::Placeholder`].
    pub placeholder: String,
    /// Report a leaf partition's changes under its top partitioned table's name.
    pub partition_root: bool,
}

impl Default for ShapeConfig {
    fn default() -> Self {
        ShapeConfig {
            unchanged_toast: UnchangedToast::default(),
            placeholder: DEFAULT_UNCHANGED_TOAST_PLACEHOLDER.into(),
            partition_root: false,
        }
    }
}

impl ShapeConfig {
    /// True when the streamer needs the catalog's view of the slot's tables.
    pub fn uses_catalog(&self) -> bool {
        self.unchanged_toast != UnchangedToast::Omit || self.partition_root
    }
}

pub(super) fn build(
    src: &Source<'_>,
    raw: &SlotFile,
    place: &dyn Fn(&str) -> String,
) -> Result<ShapeConfig, ConfigError> {
    let unchanged_toast = match &raw.unchanged_toast {
        None => UnchangedToast::default(),
        Some(v) => match &v.value {
            Node::Str(s) if s == "omit" => UnchangedToast::Omit,
            Node::Str(s) if s == "list" => UnchangedToast::List,
            Node::Str(s) if s == "placeholder" => UnchangedToast::Placeholder,
            other => {
                return Err(src.at(
                    v,
                    format!(
                        "{}: expected `omit`, `list` or `placeholder`, found {}; `list` adds \
                         \"unchanged_toast\": [columns] to an update that left TOASTed \
                         columns out, `placeholder` puts a marker value in their place",
                        place("unchanged_toast"),
                        other.show()
                    ),
                ))
            }
        },
    };
    let placeholder = match &raw.unchanged_toast_placeholder {
        None => DEFAULT_UNCHANGED_TOAST_PLACEHOLDER.to_string(),
        Some(v) => {
            let Node::Str(text) = &v.value else {
                return Err(src.at(
                    v,
                    format!(
                        "{}: expected a text value, found {}; quote it, e.g. \
                         unchanged_toast_placeholder: \"__unavailable\"",
                        place("unchanged_toast_placeholder"),
                        v.value.show()
                    ),
                ));
            };
            if unchanged_toast != UnchangedToast::Placeholder {
                return Err(src.at(
                    v,
                    format!(
                        "{}: only used with unchanged_toast: placeholder; set that too, or \
                         remove this key",
                        place("unchanged_toast_placeholder"),
                    ),
                ));
            }
            if text.len() > MAX_UNCHANGED_TOAST_PLACEHOLDER_BYTES {
                return Err(src.at(
                    v,
                    format!(
                        "{}: {} bytes, over the limit of {MAX_UNCHANGED_TOAST_PLACEHOLDER_BYTES} \
                         (it is repeated for every left-out column of every update); pick a \
                         shorter marker",
                        place("unchanged_toast_placeholder"),
                        text.len()
                    ),
                ));
            }
            text.clone()
        }
    };
    let partition_root = src.flag(&raw.partition_root, &place("partition_root"), false)?;
    Ok(ShapeConfig {
        unchanged_toast,
        placeholder,
        partition_root,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn load(extra: &str) -> Result<ShapeConfig, String> {
        let text = format!(
            "replication_slots:\n  - orders:\n      host: h\n      user: u\n      db_name: d\n      kns_stream: s\n{extra}"
        );
        Config::from_text(Path::new("t.yml"), &text, &|_| None)
            .map(|c| c.slots[0].shape.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_list_unchanged_toast_and_keep_leaf_names() {
        let shape = load("").unwrap();
        assert_eq!(shape, ShapeConfig::default());
        assert_eq!(shape.unchanged_toast, UnchangedToast::List);
        assert_eq!(shape.placeholder, "__debezium_unavailable_value");
        assert!(!shape.partition_root);
        assert!(shape.uses_catalog());
        let off = load("      unchanged_toast: omit\n").unwrap();
        assert!(
            !off.uses_catalog(),
            "omit without partition_root needs no lookups"
        );
    }

    #[test]
    fn every_key_is_read() {
        let shape = load(
            "      unchanged_toast: placeholder\n      unchanged_toast_placeholder: \"__u\"\n      partition_root: true\n",
        )
        .unwrap();
        assert_eq!(shape.unchanged_toast, UnchangedToast::Placeholder);
        assert_eq!(shape.placeholder, "__u");
        assert!(shape.partition_root);
    }

    #[test]
    fn bad_values_name_the_line_and_the_fix() {
        let err = load("      unchanged_toast: 3\n").unwrap_err();
        assert!(err.starts_with("t.yml:7:"), "{err}");
        let long = format!(
            "      unchanged_toast: placeholder\n      unchanged_toast_placeholder: \"{}\"\n",
            "x".repeat(MAX_UNCHANGED_TOAST_PLACEHOLDER_BYTES + 1)
        );
        assert!(load(&long).unwrap_err().contains("pick a shorter marker"));
        let number = "      unchanged_toast: placeholder\n      unchanged_toast_placeholder: 5\n";
        assert!(load(number).unwrap_err().contains("expected a text value"));
    }
}
