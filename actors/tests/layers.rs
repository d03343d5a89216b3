//! The crate's layers, checked from its source: a file of the leaf or the
//! supervision layer never imports from a layer above it, and no import
//! cycle among the crate's files runs through more than three of them.
//!
//! ```text
//! API          handle, sessions, host (but its tool registry), ffi, runtime,
//!              agent (the node agent's workers)
//! supervision  worker, pool, service
//! leaf         wire, process, reaper, config, error, telemetry, variables,
//!              host::tools (the host tool registry), remote
//! ```
//!
//! A file's imports are the `crate::…` paths it names (and `super::…`, and
//! its own child modules), outside comments and its `#[cfg(test)]` module:
//! tests may reach anywhere. A path is charged to the deepest file it names
//! (`crate::pool::WorkerKey` to `pool.rs`, `crate::host::tools::HostArgs` to
//! `host/tools.rs`); a name the crate root re-exports (`crate::Error`) to the
//! file it comes from.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Layers, lowest first.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "leaf",
        &[
            "wire",
            "ask",
            "process",
            "reaper",
            "config",
            "error",
            "telemetry",
            "variables",
            "host::tools",
            "remote",
        ],
    ),
    ("supervision", &["worker", "pool", "service"]),
    (
        "API",
        &["handle", "sessions", "host", "ffi", "runtime", "agent"],
    ),
];

/// Public paths the crate root keeps for moved modules.
const ALIASES: &[(&str, &str)] = &[("host_tools", "host::tools")];

/// Longest import cycle allowed, in files.
const MAX_CYCLE: usize = 3;

type Module = Vec<String>;

struct Crate {
    /// Module path → its file, relative to `src/`.
    files: BTreeMap<Module, PathBuf>,
    /// Names the root re-exports → the module they come from.
    root_exports: BTreeMap<String, Module>,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(rel: &Path) -> Module {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts == ["lib"] {
        parts.clear();
    }
    parts
}

/// The file's code without comments, string contents and its test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '/' if chars.peek() == Some(&'/') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        out.push('\n');
                        break;
                    }
                }
            }
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    out
}

/// `code` without the paths of `pub(in path)`: they say who may see an
/// item, and import nothing.
fn without_visibility_paths(code: &str) -> String {
    let mut out = String::with_capacity(code.len());
    let mut rest = code;
    while let Some(at) = rest.find("pub(in ") {
        out.push_str(&rest[..at]);
        out.push_str("pub(");
        rest = &rest[at + "pub(in ".len()..];
        rest = &rest[rest.find(')').unwrap_or(rest.len())..];
    }
    out.push_str(rest);
    out
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// Every path of identifiers following `prefix::` in `code` (for
/// `prefix::{a, b::c}`, each of `a` and `b::c`).
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let needle = format!("{prefix}::");
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(&needle) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + needle.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let item = item.trim();
                if !item.is_empty() {
                    found.push(segments(item));
                }
            }
        } else {
            found.push(segments(rest));
        }
    }
    found
}

fn segments(mut s: &str) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let id = ident_at(s);
        if id.is_empty() {
            break;
        }
        out.push(id.to_string());
        s = &s[id.len()..];
        match s.strip_prefix("::") {
            Some(next) => s = next,
            None => break,
        }
    }
    out
}

impl Crate {
    fn load() -> (Self, BTreeMap<Module, String>) {
        let src = src_dir();
        let mut paths = Vec::new();
        rust_files(&src, &mut paths);
        let mut files = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for path in paths {
            let rel = path.strip_prefix(&src).unwrap().to_path_buf();
            let module = module_of(&rel);
            texts.insert(module.clone(), std::fs::read_to_string(&path).unwrap());
            files.insert(module, rel);
        }
        let mut root_exports = BTreeMap::new();
        for line in code(&texts[&Vec::new()]).split(';') {
            let Some(rest) = line.trim().strip_prefix("pub use ") else {
                continue;
            };
            let rest = rest.trim();
            let module = segments(rest);
            let names: Vec<String> = match rest.find('{') {
                Some(open) => rest[open + 1..]
                    .trim_end_matches('}')
                    .split(',')
                    .map(|n| n.trim().to_string())
                    .filter(|n| !n.is_empty())
                    .collect(),
                None => module.last().cloned().into_iter().collect(),
            };
            for name in names {
                root_exports.insert(name, module.clone());
            }
        }
        (
            Self {
                files,
                root_exports,
            },
            texts,
        )
    }

    /// The deepest file module that `path` (absolute, from the root) names.
    fn resolve(&self, path: &[String]) -> Option<Module> {
        let mut path = path.to_vec();
        if let Some(first) = path.first()
            && let Some((_, to)) = ALIASES.iter().find(|(from, _)| first == from)
        {
            let mut aliased: Vec<String> = to.split("::").map(String::from).collect();
            aliased.extend(path.drain(1..));
            path = aliased;
        }
        if let Some(first) = path.first()
            && !self.files.contains_key(&vec![first.clone()])
        {
            let from = self.root_exports.get(first)?;
            return self.resolve(from);
        }
        (1..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|m| self.files.contains_key(m))
    }

    /// The files `module`'s code imports from.
    fn imports(&self, module: &Module, text: &str) -> BTreeSet<Module> {
        let code = without_visibility_paths(&code(text));
        let mut out = BTreeSet::new();
        for path in paths_after(&code, "crate") {
            out.extend(self.resolve(&path));
        }
        // `super::` is the parent module: `a` for `a/b.rs`.
        if let Some((_, parent)) = module.split_last() {
            for path in paths_after(&code, "super") {
                let mut full = parent.to_vec();
                full.extend(path);
                out.extend(self.resolve(&full));
            }
        }
        // Its own children, named by relative paths (`messages::PoolMessage`).
        for (child, _) in self.files.range(module.clone()..) {
            if child.len() != module.len() + 1 || !child.starts_with(module) {
                continue;
            }
            let name = child.last().unwrap();
            if !paths_after(&code, name).is_empty() {
                out.insert(child.clone());
            }
        }
        out.remove(module);
        out
    }
}

fn layer_of(module: &Module) -> Option<usize> {
    let path = module.join("::");
    LAYERS
        .iter()
        .enumerate()
        .flat_map(|(rank, (_, mods))| mods.iter().map(move |m| (rank, *m)))
        .filter(|(_, m)| path == *m || path.starts_with(&format!("{m}::")))
        .max_by_key(|(_, m)| m.len())
        .map(|(rank, _)| rank)
}

fn graph() -> (Crate, BTreeMap<Module, BTreeSet<Module>>) {
    let (krate, texts) = Crate::load();
    let graph = texts
        .iter()
        .map(|(m, text)| (m.clone(), krate.imports(m, text)))
        .collect();
    (krate, graph)
}

fn name(krate: &Crate, m: &Module) -> String {
    krate.files[m].display().to_string()
}

#[test]
fn every_module_has_a_layer() {
    let (krate, _) = Crate::load();
    let missing: Vec<String> = krate
        .files
        .keys()
        .filter(|m| !m.is_empty() && layer_of(m).is_none())
        .map(|m| name(&krate, m))
        .collect();
    assert!(
        missing.is_empty(),
        "files in no layer (add them to LAYERS): {missing:?}"
    );
}

#[test]
fn no_file_imports_from_a_layer_above_its_own() {
    let (krate, graph) = graph();
    let mut wrong = Vec::new();
    for (from, imports) in &graph {
        let Some(own) = layer_of(from) else { continue };
        for to in imports {
            if let Some(theirs) = layer_of(to)
                && theirs > own
            {
                wrong.push(format!(
                    "{} ({}) imports {} ({})",
                    name(&krate, from),
                    LAYERS[own].0,
                    name(&krate, to),
                    LAYERS[theirs].0
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports pointing up:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_transport_knows_nothing_above_it() {
    let (krate, graph) = graph();
    for (from, imports) in &graph {
        if from.first().map(String::as_str) != Some("wire") {
            continue;
        }
        for to in imports {
            let top = to.first().map(String::as_str).unwrap_or("");
            assert!(
                ["wire", "error", "telemetry"].contains(&top),
                "{} imports {}",
                name(&krate, from),
                name(&krate, to)
            );
        }
    }
}

#[test]
fn no_import_cycle_runs_through_more_than_three_files() {
    let (krate, graph) = graph();
    let nodes: Vec<&Module> = graph.keys().collect();
    let index: BTreeMap<&Module, usize> = nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let edges: Vec<Vec<usize>> = nodes
        .iter()
        .map(|m| {
            graph[*m]
                .iter()
                .filter_map(|t| index.get(t).copied())
                .collect()
        })
        .collect();
    // Each simple cycle is found once, from its lowest node.
    let mut longest: Vec<usize> = Vec::new();
    fn walk(
        start: usize,
        at: usize,
        edges: &[Vec<usize>],
        path: &mut Vec<usize>,
        longest: &mut Vec<usize>,
    ) {
        for &next in &edges[at] {
            if next == start && path.len() > longest.len() {
                *longest = path.clone();
            } else if next > start && !path.contains(&next) {
                path.push(next);
                walk(start, next, edges, path, longest);
                path.pop();
            }
        }
    }
    for start in 0..nodes.len() {
        walk(start, start, &edges, &mut vec![start], &mut longest);
    }
    let cycle: Vec<String> = longest.iter().map(|&i| name(&krate, nodes[i])).collect();
    assert!(
        cycle.len() <= MAX_CYCLE,
        "an import cycle through {} files: {}",
        cycle.len(),
        cycle.join(" → ")
    );
}

#[test]
fn the_checker_reads_paths_as_the_compiler_does() {
    let code = code("use crate::{a::B, c};\n// crate::d::E\nlet s = \"crate::f\"; x::crate::g;");
    assert_eq!(
        paths_after(&code, "crate"),
        vec![
            vec!["a".to_string(), "B".to_string()],
            vec!["c".to_string()]
        ]
    );
    assert_eq!(
        module_of(Path::new("pool/messages.rs")),
        ["pool", "messages"]
    );
    assert_eq!(layer_of(&vec!["host".into(), "tools".into()]), Some(0));
    assert_eq!(layer_of(&vec!["host".into(), "calls".into()]), Some(2));
    assert_eq!(layer_of(&vec!["pool".into()]), Some(1));
}
