//! The shape of `src/`, checked: no import circle among its top-level modules, and
//! every file of `src/`, `tests/` and `examples/` opens with a `//!` line saying what
//! it owns.
//!
//! Owns the module graph as read from the source text: a top-level module is
//! `src/NAME.rs` or `src/NAME/`, and module A depends on B when code in A (unit tests
//! included, comments and string literals not) names `crate::B` (also inside
//! `use crate::{..}` groups). `super::` paths are not followed: in this crate they never
//! leave the top-level module they are written in. `src/lib.rs` (the root) and
//! `src/bin/` (the binaries, above everything) are not modules of the graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One `crate::B` named in top-level module A.
#[derive(Debug, Clone)]
struct Edge {
    from: String,
    to: String,
    /// `path:line` of the first place A names B.
    at: String,
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The text with comments and string/char literals blanked out (newlines kept, so
/// line numbers stay right).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == b'/' && next == Some(b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && next == Some(b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend([b' ', b' ']);
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend([b' ', b' ']);
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r'
            && (next == Some(b'"') || next == Some(b'#'))
            && !b[..i]
                .last()
                .is_some_and(|p| p.is_ascii_alphanumeric() || *p == b'_')
        {
            // A raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            j = (j + close.len()).min(b.len());
            for &x in &b[i..j] {
                blank(&mut out, x);
            }
            i = j;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    blank(&mut out, b[i]);
                    i += 1;
                }
                if i < b.len() {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // A char literal ('x', '\n', '\''), or a lifetime ('a), left as it is.
            let end = if next == Some(b'\\') {
                b[i + 2..]
                    .iter()
                    .position(|&x| x == b'\'')
                    .map(|p| i + 2 + p + 1)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(i + 3)
            } else {
                None
            };
            match end {
                Some(end) => {
                    out.extend(std::iter::repeat_n(b' ', end - i));
                    i = end;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of every `crate::` path in `code`, with its byte offset.
fn crate_paths(code: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(p) = code[from..].find("crate::") {
        let at = from + p;
        from = at + "crate::".len();
        // `$crate::` and `pg_cdc_to_kinesis_crate::` are not this crate's root path.
        if code[..at]
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        {
            continue;
        }
        let rest = code[from..].trim_start();
        if let Some(group) = rest.strip_prefix('{') {
            // use crate::{a::X, b, c::{..}}: the first segment of each item.
            let mut depth = 0;
            let mut item_start = true;
            for (k, ch) in group.char_indices() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && !c.is_whitespace() => {
                        item_start = false;
                        let name = ident_at(&group[k..]);
                        if !name.is_empty() {
                            found.push((at, name.to_string()));
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.push((at, name.to_string()));
            }
        }
    }
    found
}

/// The top-level module a file of `src/` belongs to (`None`: the root or a binary).
fn top_module(rel: &Path) -> Option<String> {
    let mut parts = rel.components().map(|c| c.as_os_str().to_string_lossy());
    let first = parts.next()?;
    if first == "lib.rs" || first == "bin" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_string())
}

/// Every dependency between two top-level modules, from `(path relative to src/,
/// text)` pairs; one edge per pair of modules, at its first place.
fn edges(files: &[(PathBuf, String)]) -> Vec<Edge> {
    let modules: BTreeSet<String> = files.iter().filter_map(|(p, _)| top_module(p)).collect();
    let mut seen: BTreeMap<(String, String), String> = BTreeMap::new();
    for (path, text) in files {
        let Some(from) = top_module(path) else {
            continue;
        };
        let code = code_only(text);
        for (offset, to) in crate_paths(&code) {
            if to == from || !modules.contains(&to) {
                continue;
            }
            let line = code[..offset].matches('\n').count() + 1;
            seen.entry((from.clone(), to))
                .or_insert_with(|| format!("src/{}:{line}", path.display()));
        }
    }
    seen.into_iter()
        .map(|((from, to), at)| Edge { from, to, at })
        .collect()
}

/// Each import circle as the modules along it (first = last), shortest first found
/// from each module that is on one; empty when the graph has none.
fn circles(edges: &[Edge]) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for e in edges {
        next.entry(&e.from).or_default().push(&e.to);
    }
    let mut found: Vec<Vec<String>> = Vec::new();
    let mut covered: BTreeSet<&str> = BTreeSet::new();
    for &start in next.keys() {
        if covered.contains(start) {
            continue;
        }
        // Breadth-first from `start` back to `start`: the shortest circle through it.
        let mut parent: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        let mut closing = None;
        'search: while let Some(m) = queue.pop_front() {
            for &n in next.get(m).into_iter().flatten() {
                if n == start {
                    closing = Some(m);
                    break 'search;
                }
                if !parent.contains_key(n) {
                    parent.insert(n, m);
                    queue.push_back(n);
                }
            }
        }
        if let Some(mut m) = closing {
            // start → … → m → start, walking the parents back from m.
            let mut back = vec![m];
            while m != start {
                m = parent[m];
                back.push(m);
            }
            let cycle: Vec<String> = back
                .iter()
                .rev()
                .chain(std::iter::once(&start))
                .map(|s| s.to_string())
                .collect();
            covered.extend(back);
            found.push(cycle);
        }
    }
    found
}

/// The report naming each circle and where each of its imports is.
fn describe(circles: &[Vec<String>], edges: &[Edge]) -> String {
    let mut out = String::new();
    for c in circles {
        out.push_str(&format!("import circle: {}\n", c.join(" → ")));
        for w in c.windows(2) {
            if let Some(e) = edges.iter().find(|e| e.from == w[0] && e.to == w[1]) {
                out.push_str(&format!("  {} → {} at {}\n", e.from, e.to, e.at));
            }
        }
    }
    out
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn src_files() -> Vec<(PathBuf, String)> {
    let src = repo().join("src");
    rust_files(&src)
        .into_iter()
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p.strip_prefix(&src).unwrap().to_path_buf(), text)
        })
        .collect()
}

#[test]
fn the_modules_of_src_import_each_other_in_one_direction_only() {
    let files = src_files();
    assert!(files.len() > 50, "read only {} files of src/", files.len());
    let edges = edges(&files);
    let circles = circles(&edges);
    assert!(
        circles.is_empty(),
        "the modules of src/ must depend on each other one way \
         (config → source/decode → record → sink → ack/checkpoint → pipeline → run/bin); \
         move the shared item below both modules:\n{}",
        describe(&circles, &edges)
    );
}

#[test]
fn every_file_of_src_tests_and_examples_opens_with_a_line_saying_what_it_owns() {
    let mut missing = Vec::new();
    let mut count = 0;
    for dir in ["src", "tests", "examples"] {
        for path in rust_files(&repo().join(dir)) {
            count += 1;
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let first = text.lines().next().unwrap_or("");
            let said = first
                .strip_prefix("//!")
                .is_some_and(|rest| rest.trim().len() >= 10);
            if !said {
                missing.push(path.strip_prefix(repo()).unwrap().display().to_string());
            }
        }
    }
    assert!(count > 100, "read only {count} files");
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` line saying what they own:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn the_graph_check_names_a_circle_through_grouped_uses_and_ignores_comments_and_strings() {
    let file = |p: &str, t: &str| (PathBuf::from(p), t.to_string());
    let files = [
        file("lib.rs", "pub mod a; pub mod b; pub mod c;"),
        file("a.rs", "//! A.\nuse crate::{lsn::Lsn, b::X};\n"),
        file(
            "b/mod.rs",
            "//! B, not crate::a.\nfn f() { let s = \"crate::a\"; let c = '\"'; }\n/* crate::a */\n",
        ),
        file("b/inner.rs", "//! B.\n\nfn g() -> crate::c::Y { todo!() }\n"),
        file("c.rs", "//! C.\nuse crate::a;\n"),
        file("lsn.rs", "//! L.\n"),
    ];
    let edges = edges(&files);
    let pairs: Vec<(&str, &str)> = edges
        .iter()
        .map(|e| (e.from.as_str(), e.to.as_str()))
        .collect();
    assert_eq!(pairs, [("a", "b"), ("a", "lsn"), ("b", "c"), ("c", "a")]);
    let circles = circles(&edges);
    assert_eq!(circles, [vec!["a", "b", "c", "a"]]);
    let report = describe(&circles, &edges);
    assert!(report.contains("import circle: a → b → c → a"), "{report}");
    assert!(report.contains("b → c at src/b/inner.rs:3"), "{report}");
}
