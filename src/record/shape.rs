//! What the streamer knows of a table from the catalog: the columns wal2json may
//! print for it, which of them an update can leave out, and its partition root.
//!
//! Owns the per-slot cache of those shapes, its size bound and the rules that say
//! when a shape is stale. It never queries PostgreSQL (`pipeline::catalog` does, off
//! the record path) and never blocks: the encoder only reads what was looked up
//! before the change reached it.

use rustc_hash::FxHashMap as HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::{ShapeConfig, UnchangedToast};
use crate::decode::{Change, Kind};

/// At most this many tables' shapes per slot; the least recently used goes first.
pub const MAX_CACHED_TABLES: usize = 4096;
/// A shape is read again after this long in any case: a partition detached or
/// attached elsewhere, a column dropped that no insert has shown yet.
pub const SHAPE_TTL: Duration = Duration::from_secs(300);
/// An update that leaves out a column is read again against the catalog at most this
/// often per table: the column may have been dropped rather than left unchanged.
pub const REVERIFY_LEFT_OUT: Duration = Duration::from_secs(60);
/// A change that disagrees with its table's shape triggers at most one lookup per
/// table this often, so a disagreement the catalog cannot explain costs little.
pub const MIN_RELOOKUP: Duration = Duration::from_secs(1);

/// One column as the catalog lists it (`pg_attribute`: not dropped, `attnum > 0`;
/// stored generated columns included, as wal2json prints them), in `attnum` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeColumn {
    pub name: String,
    /// A variable-length type whose storage allows out-of-line values
    /// (`attlen = -1`, `attstorage <> 'p'`): the only columns wal2json can leave out
    /// of an update as unchanged TOAST.
    pub toastable: bool,
}

/// A table's shape at the time of the lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableShape {
    pub columns: Vec<ShapeColumn>,
    /// The top partitioned table (`schema`, `table`) when this is a partition
    /// (at any depth); `None` for any other table.
    pub root: Option<(String, String)>,
}

/// A per-table `partition_root`: (leaf `schema.table`, root `schema.table`) → the
/// table's setting, `None` for the slot's.
pub type PerTableRoot = Arc<dyn Fn((&str, &str), (&str, &str)) -> Option<bool> + Send + Sync>;

/// Whether a leaf is reported under its root: the slot's `partition_root`, or a
/// per-table rule given the leaf's and the root's `schema.table`.
#[derive(Clone, Default)]
pub struct RootRule {
    default: bool,
    per_table: Option<PerTableRoot>,
}

impl std::fmt::Debug for RootRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootRule")
            .field("default", &self.default)
            .field("per_table", &self.per_table.is_some())
            .finish()
    }
}

impl RootRule {
    pub fn new(default: bool) -> Self {
        RootRule {
            default,
            per_table: None,
        }
    }

    /// A per-table override (the `tables:` entries' `partition_root`): called with
    /// the leaf's and the root's (`schema`, `table`), `None` keeps the slot's default.
    pub fn with_per_table(
        mut self,
        rule: impl Fn((&str, &str), (&str, &str)) -> Option<bool> + Send + Sync + 'static,
    ) -> Self {
        self.per_table = Some(Arc::new(rule));
        self
    }

    /// Might any table be reported under its root?
    pub fn any(&self) -> bool {
        self.default || self.per_table.is_some()
    }

    /// Is the leaf `leaf` (`schema`, `table`) reported under its root `root`?
    pub fn applies(&self, leaf: (&str, &str), root: (&str, &str)) -> bool {
        let Some(rule) = &self.per_table else {
            return self.default;
        };
        rule(leaf, root).unwrap_or(self.default)
    }
}

/// What the encoder does with shapes.
#[derive(Debug, Clone)]
pub struct ShapeRules {
    pub unchanged_toast: UnchangedToast,
    pub placeholder: String,
    pub root: RootRule,
}

impl Default for ShapeRules {
    fn default() -> Self {
        ShapeRules::from_config(&ShapeConfig {
            unchanged_toast: UnchangedToast::Omit,
            ..ShapeConfig::default()
        })
    }
}

impl ShapeRules {
    pub fn from_config(config: &ShapeConfig) -> Self {
        ShapeRules {
            unchanged_toast: config.unchanged_toast,
            placeholder: config.placeholder.clone(),
            root: RootRule::new(config.partition_root),
        }
    }

    /// True when changes need their tables' shapes at all.
    pub fn uses_catalog(&self) -> bool {
        self.unchanged_toast != UnchangedToast::Omit || self.root.any()
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// `None`: the catalog does not know the table (dropped or renamed since).
    shape: Option<TableShape>,
    looked_up: Instant,
    used: u64,
    /// A [`Change::columns_tag`] whose columns matched the shape exactly: a change
    /// with that tag needs no comparison.
    matched_tag: u64,
}

/// The shapes of one slot's tables, bounded by [`MAX_CACHED_TABLES`].
#[derive(Debug, Clone, Default)]
pub struct ShapeCache {
    /// schema → table → entry: looked up by `&str` without building a key.
    tables: HashMap<String, HashMap<String, Entry>>,
    len: usize,
    tick: u64,
    /// The table a change last needed no lookup for, by a tag its shape matched.
    last: Option<Last>,
}

/// A table and a [`Change::columns_tag`] known to match its shape, and when the
/// shape was looked up: a change of that table with that tag, read before the shape
/// is [`SHAPE_TTL`] old, needs no lookup, and [`ShapeCache::needs_lookup`] answers
/// so without its two map lookups. The shape cannot change meanwhile: every change
/// to the map ([`ShapeCache::insert`]) forgets it first. `hit`: answered so since
/// it was set, so its `used` mark is behind and is written back when forgotten.
#[derive(Debug, Clone)]
struct Last {
    schema: crate::decode::Name,
    table: crate::decode::Name,
    tag: u64,
    looked_up: Instant,
    hit: bool,
}

impl ShapeCache {
    /// The table's shape, if known; `None` also for a table the catalog lacks.
    pub fn get(&self, schema: &str, table: &str) -> Option<&TableShape> {
        self.entry(schema, table).and_then(|e| e.shape.as_ref())
    }

    fn entry(&self, schema: &str, table: &str) -> Option<&Entry> {
        self.tables.get(schema).and_then(|t| t.get(table))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Store what the catalog said of the table at `now`, evicting the least
    /// recently used table when the cache is full.
    pub fn insert(&mut self, schema: &str, table: &str, shape: Option<TableShape>, now: Instant) {
        self.forget_last();
        self.tick += 1;
        let entry = Entry {
            shape,
            looked_up: now,
            used: self.tick,
            matched_tag: 0,
        };
        let tables = self.tables.entry(schema.to_string()).or_default();
        if tables.insert(table.to_string(), entry).is_none() {
            self.len += 1;
        }
        while self.len > MAX_CACHED_TABLES {
            self.evict_one();
        }
    }

    /// Forget [`Last`], marking its table used now if it was answered for since.
    fn forget_last(&mut self) {
        let Some(last) = self.last.take().filter(|l| l.hit) else {
            return;
        };
        let tick = self.tick;
        if let Some(entry) = self
            .tables
            .get_mut(last.schema.as_str())
            .and_then(|t| t.get_mut(last.table.as_str()))
        {
            entry.used = tick;
        }
    }

    fn evict_one(&mut self) {
        let oldest = self
            .tables
            .iter()
            .flat_map(|(s, t)| t.iter().map(move |(n, e)| (e.used, s, n)))
            .min_by_key(|(used, _, _)| *used)
            .map(|(_, s, n)| (s.clone(), n.clone()));
        let Some((schema, table)) = oldest else {
            return;
        };
        if let Some(t) = self.tables.get_mut(&schema) {
            if t.remove(&table).is_some() {
                self.len -= 1;
            }
            if t.is_empty() {
                self.tables.remove(&schema);
            }
        }
    }

    /// Whether `change`, read from the stream at `now`, needs its table (`schema`,
    /// `table`: the change's own or its root's) looked up first: unknown, older than
    /// [`SHAPE_TTL`], or at odds with the change (a column the shape lacks, an insert
    /// without a column it has, an update without a column that cannot be TOASTed, or
    /// one that leaves a column out and was not checked for [`REVERIFY_LEFT_OUT`]).
    /// When not, the table is marked as needed now, so the bound evicts others first.
    pub fn needs_lookup(
        &mut self,
        (schema, table): (&str, &str),
        change: &Change,
        toast: bool,
        now: Instant,
    ) -> bool {
        self.tick += 1;
        let tick = self.tick;
        if let Some(last) = self.last.as_mut() {
            if change.columns_tag != 0
                && last.tag == change.columns_tag
                && last.table == table
                && last.schema == schema
                && now.saturating_duration_since(last.looked_up) <= SHAPE_TTL
            {
                last.hit = true;
                return false;
            }
        }
        let Some(entry) = self.tables.get_mut(schema).and_then(|t| t.get_mut(table)) else {
            return true;
        };
        let age = now.saturating_duration_since(entry.looked_up);
        if age > SHAPE_TTL {
            return true;
        }
        let needs = match &entry.shape {
            Some(shape)
                if toast
                    && matches!(change.kind, Kind::Insert | Kind::Update)
                    && age >= MIN_RELOOKUP
                    && (change.columns_tag == 0 || change.columns_tag != entry.matched_tag) =>
            {
                let (unknown, left_out, fixed_left_out) = compare(shape, change);
                if !unknown && !left_out {
                    entry.matched_tag = change.columns_tag;
                }
                match change.kind {
                    _ if unknown || fixed_left_out => true,
                    Kind::Insert => left_out,
                    _ => left_out && age > REVERIFY_LEFT_OUT,
                }
            }
            _ => false,
        };
        if !needs {
            entry.used = tick;
            if change.columns_tag != 0 && change.columns_tag == entry.matched_tag {
                let looked_up = entry.looked_up;
                self.forget_last();
                self.last = Some(Last {
                    schema: schema.into(),
                    table: table.into(),
                    tag: change.columns_tag,
                    looked_up,
                    hit: false,
                });
            }
        }
        needs
    }
}

/// How `change`'s new row differs from `shape`: a printed column the shape lacks, a
/// shape column left out, a left-out column that cannot be TOASTed. wal2json prints
/// in `attnum` order, so one walk usually decides; a column out of that order is
/// looked for.
fn compare(shape: &TableShape, change: &Change) -> (bool, bool, bool) {
    let printed = &change.columns;
    let (mut next, mut matched) = (0, 0);
    let (mut left_out, mut fixed_left_out) = (false, false);
    for column in &shape.columns {
        let present = match printed.get(next) {
            Some(c) if c.name == column.name => {
                next += 1;
                true
            }
            _ => printed.iter().any(|c| c.name == column.name),
        };
        if present {
            matched += 1;
        } else {
            left_out = true;
            fixed_left_out |= !column.toastable;
        }
    }
    // Column names are unique in both lists: every printed column was matched
    // unless one is unknown to the shape.
    (matched < printed.len(), left_out, fixed_left_out)
}

#[cfg(test)]
mod tests;
