//! A [`Description`] as Rust source: one `async fn` per Python function, an
//! options struct with a builder for its defaulted and keyword-only
//! parameters, one struct per class (the object it wraps, its typed methods
//! and property getters), doc comments from the docstrings, and a header
//! recording where it all came from.
//!
//! The output is plain items, without inner attributes, so that it can be a
//! module file of its own (`mod math;`) or be `include!`d inside one. It
//! names the runtime through `<crate>::codegen::rt` only.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use crate::describe::{Description, Module, SCHEMA, Skip, Type};
use crate::header::Header;
use crate::names;
use crate::report::{Item, Report};
use crate::types::Out;

mod call;
mod class;
mod docs;

use self::call::{Call, Target, unsupported};
use self::docs::doc_comment;

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The path of the `snakepit` crate in the generated code.
    pub crate_path: String,
    /// The command that generates the file again, for its header.
    pub regenerate: String,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            crate_path: "::snakepit".into(),
            regenerate: "snakepit gen rust".into(),
        }
    }
}

/// Generated source and its coverage.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The Rust source.
    pub source: String,
    /// What it covers and what it skipped.
    pub report: Report,
}

/// A description the generator cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// Written by a newer or older Python side.
    #[error("the description has schema {found}; this generator reads schema {SCHEMA}")]
    Schema {
        /// Its schema.
        found: u32,
    },
    /// No modules at all.
    #[error("the description of {0} has no modules")]
    Empty(String),
}

/// Renders `desc` as Rust source.
pub fn render(desc: &Description, opts: &RenderOptions) -> Result<Rendered, RenderError> {
    if desc.schema != SCHEMA {
        return Err(RenderError::Schema { found: desc.schema });
    }
    if desc.modules.is_empty() {
        return Err(RenderError::Empty(desc.module.clone()));
    }
    let mut r = Renderer {
        root: &desc.modules[0].name,
        crate_path: &opts.crate_path,
        classes: BTreeMap::new(),
        report: Report {
            module: desc.module.clone(),
            version: desc.version.clone(),
            python: desc.python.clone(),
            generated: Vec::new(),
            skipped: desc.skipped.clone(),
        },
    };
    let mut tree = Tree::default();
    for module in &desc.modules {
        let path = r.segments(&module.name);
        // Two Python names may make one Rust name (numpy's `bool` and
        // `bool_`): the first keeps it.
        let mut idents: BTreeMap<String, &str> = BTreeMap::new();
        for class in &module.classes {
            let ident = names::camel(&class.name);
            if let Some(first) = idents.get(&ident) {
                let reason = format!("its Rust name `{ident}` is taken by class `{first}`");
                r.skip(&module.name, &class.name, "class", reason);
                continue;
            }
            idents.insert(ident.clone(), &class.name);
            r.classes.insert(
                (class.module.clone(), class.name.clone()),
                (path.clone(), ident),
            );
        }
        tree.insert(&path, module);
    }
    let mut source = Header::of(desc).render(desc, &opts.regenerate);
    source.push('\n');
    r.tree(&tree, &[], &mut source);
    Ok(Rendered {
        source,
        report: r.report,
    })
}

/// Modules nested as the Rust modules they become.
#[derive(Default)]
struct Tree<'a> {
    module: Option<&'a Module>,
    children: BTreeMap<String, Tree<'a>>,
}

impl<'a> Tree<'a> {
    fn insert(&mut self, path: &[String], module: &'a Module) {
        match path.split_first() {
            None => self.module = Some(module),
            Some((head, rest)) => self
                .children
                .entry(head.clone())
                .or_default()
                .insert(rest, module),
        }
    }
}

struct Renderer<'d> {
    root: &'d str,
    crate_path: &'d str,
    /// (module, Python class name) → (Rust module path, struct name).
    classes: BTreeMap<(String, String), (Vec<String>, String)>,
    report: Report,
}

impl<'d> Renderer<'d> {
    /// A module's path below the root, as Rust module names.
    fn segments(&self, module: &str) -> Vec<String> {
        match module.strip_prefix(self.root) {
            Some(rest) => rest
                .split('.')
                .filter(|s| !s.is_empty())
                .map(names::snake)
                .collect(),
            None => vec![names::snake(&module.replace('.', "_"))],
        }
    }

    fn tree(&mut self, tree: &Tree<'_>, path: &[String], out: &mut String) {
        let indent = "    ".repeat(path.len());
        let mut body = String::new();
        writeln!(body, "#[allow(unused_imports)]").unwrap();
        writeln!(body, "use {}::codegen::rt as _rt;", self.crate_path).unwrap();
        if let Some(module) = tree.module {
            self.module(module, path, &mut body);
        }
        for (name, child) in &tree.children {
            let mut sub = path.to_vec();
            sub.push(name.clone());
            body.push('\n');
            if let Some(m) = child.module {
                let summary = format!("Wrappers of the Python module `{}`.", m.name);
                body.push_str(&doc_comment(&summary, None, m.doc.as_deref()));
            }
            writeln!(body, "pub mod {name} {{").unwrap();
            let mut inner = String::new();
            self.tree(child, &sub, &mut inner);
            body.push_str(&inner);
            writeln!(body, "}}").unwrap();
        }
        for line in body.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                writeln!(out, "{indent}{line}").unwrap();
            }
        }
    }

    fn module(&mut self, module: &Module, path: &[String], out: &mut String) {
        // Functions and modules live in the value and type namespaces;
        // structs (classes, options) share the type namespace.
        let mut values = HashSet::new();
        let mut types: HashSet<String> = module
            .classes
            .iter()
            .map(|c| names::camel(&c.name))
            .collect();
        for f in &module.functions {
            let rust = names::snake(&f.name);
            if let Some(reason) = unsupported(f) {
                self.skip(&module.name, &f.name, "function", reason);
                continue;
            }
            if !values.insert(rust.clone()) {
                self.skip(
                    &module.name,
                    &f.name,
                    "function",
                    format!("its Rust name `{rust}` is taken by another function"),
                );
                continue;
            }
            let options = unique_type(
                &mut types,
                &format!("{}Options", names::camel(names::bare(&rust))),
            );
            let call = Call {
                python: format!("{}.{}", module.name, f.name),
                rust,
                options,
                doc: f.doc.as_deref(),
                params: &f.params,
                out: Out::of(&f.returns, &|m, n| self.class_path(path, m, n)),
                returns: Some(&f.returns),
                target: Target::Function {
                    module: &module.name,
                    function: f.name.clone(),
                },
            };
            out.push('\n');
            let mut options = String::new();
            let item = self.callable(&call, path, false, out, &mut options);
            out.push_str(&options);
            self.report.generated.push(Item {
                kind: "function",
                ..item
            });
        }
        for class in &module.classes {
            let key = (class.module.clone(), class.name.clone());
            let rendered_here = self.classes.get(&key).is_some_and(|(p, _)| p == path);
            if rendered_here {
                out.push('\n');
                self.class(module, class, path, &mut types, out);
            }
        }
    }
    /// A result type inside a class's `impl`, where the class itself is `Self`.
    fn out_in_class(&self, ty: &Type, path: &[String]) -> Out {
        Out::of(ty, &|m, n| self.class_path(path, m, n))
    }

    fn skip(&mut self, module: &str, name: &str, kind: &str, reason: String) {
        self.report.skipped.push(Skip {
            module: module.to_string(),
            name: name.to_string(),
            kind: kind.to_string(),
            reason,
        });
    }

    /// The Rust path of the wrapper of `module.name` from the Rust module
    /// at `from`; `None` when it is not generated.
    fn class_path(&self, from: &[String], module: &str, name: &str) -> Option<String> {
        let (to, ident) = self.classes.get(&(module.to_string(), name.to_string()))?;
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        let mut parts: Vec<String> = vec!["super".to_string(); from.len() - common];
        parts.extend(to[common..].iter().cloned());
        parts.push(ident.clone());
        Some(parts.join("::"))
    }
}

/// `name`, or `name2`, `name3`... whichever is free in `types`.
fn unique_type(types: &mut HashSet<String>, name: &str) -> String {
    let mut candidate = name.to_string();
    let mut n = 2;
    while !types.insert(candidate.clone()) {
        candidate = format!("{name}{n}");
        n += 1;
    }
    candidate
}

#[cfg(test)]
mod tests;
