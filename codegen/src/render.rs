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

use crate::describe::{
    Class, Description, Function, FunctionKind, Module, Param, ParamKind, SCHEMA, Skip, Type,
};
use crate::header::Header;
use crate::names;
use crate::report::{Item, Report};
use crate::types::{In, Out};

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

/// One parameter the Rust function takes.
struct Arg {
    py: String,
    rust: String,
    input: In,
    keyword: bool,
}

/// One optional parameter, set through the options builder.
struct Opt {
    py: String,
    rust: String,
    input: In,
    default: String,
    positional: bool,
}

/// A Python signature split the way the Rust function takes it.
struct Sig {
    args: Vec<Arg>,
    varargs: Option<Arg>,
    options: Vec<Opt>,
    var_kwargs: bool,
}

impl Sig {
    fn has_options(&self) -> bool {
        !self.options.is_empty() || self.var_kwargs
    }

    fn params(&self) -> usize {
        self.args.len() + usize::from(self.varargs.is_some()) + self.options.len()
    }

    fn typed(&self) -> usize {
        let args = self.args.iter().chain(&self.varargs);
        args.filter(|a| a.input.is_typed()).count()
            + self.options.iter().filter(|o| o.input.is_typed()).count()
    }
}

/// What a call goes through.
enum Target<'a> {
    /// `module.function(...)`, on `py`.
    Function { module: &'a str, function: String },
    /// `module.Class(...)`, on `py`.
    Constructor { module: &'a str, class: &'a str },
    /// `obj.name(...)`, on the wrapper's own target.
    Method { name: &'a str },
}

/// One callable to render.
struct Call<'a> {
    python: String,
    rust: String,
    options: String,
    doc: Option<&'a str>,
    params: &'a [Param],
    out: Out,
    target: Target<'a>,
}

/// Names a parameter may not take: the generated function's own locals.
const LOCALS: &[&str] = &["py", "options", "call_args", "call_kwargs", "returned"];
/// Names a Python name may not take in a class wrapper (its own helpers).
const WRAPPER_HELPERS: &[&str] = &[
    "new",
    "from_parts",
    "from_value",
    "object",
    "object_ref",
    "target",
];
/// Names a parameter may not take in an options builder.
const OPTION_HELPERS: &[&str] = &["new", "kwarg", "kwargs", "into_call_args"];

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

    fn class(
        &mut self,
        module: &Module,
        class: &Class,
        path: &[String],
        types: &mut HashSet<String>,
        out: &mut String,
    ) {
        let ident = names::camel(&class.name);
        let python = format!("{}.{}", class.module, class.name);
        let summary = format!("A `{python}` object, kept by Python.");
        out.push_str(&doc_comment(&summary, None, class.doc.as_deref()));
        writeln!(out, "#[derive(Debug, Clone)]").unwrap();
        writeln!(out, "pub struct {ident} {{").unwrap();
        writeln!(out, "    target: _rt::FfiTarget,").unwrap();
        writeln!(out, "    object: _rt::Value,").unwrap();
        writeln!(out, "}}\n").unwrap();
        writeln!(out, "impl {ident} {{").unwrap();
        writeln!(
            out,
            "    /// The Python class these objects are instances of."
        )
        .unwrap();
        writeln!(
            out,
            "    pub const PYTHON_CLASS: &'static str = {:?};\n",
            python
        )
        .unwrap();
        let mut body = String::new();
        // Options structs of the constructor and methods, after the `impl`.
        let mut after = String::new();
        let mut members: HashSet<String> = WRAPPER_HELPERS.iter().map(|s| s.to_string()).collect();
        if let Some(init) = &class.init {
            let options = unique_type(types, &format!("{ident}Options"));
            let call = Call {
                python: python.clone(),
                rust: "new".into(),
                options,
                doc: init.doc.as_deref().or(class.doc.as_deref()),
                params: &init.params,
                out: Out::Class("Self".into()),
                target: Target::Constructor {
                    module: &class.module,
                    class: &class.name,
                },
            };
            let item = self.callable(&call, path, false, &mut body, &mut after);
            self.report.generated.push(Item {
                kind: "constructor",
                ..item
            });
            body.push('\n');
        }
        body.push_str(&wrapper_helpers(&python));
        for method in &class.methods {
            let py_name = format!("{}.{}", class.name, method.name);
            if let Some(reason) = unsupported(method) {
                self.skip(&module.name, &py_name, "method", reason);
                continue;
            }
            let rust = member_name(&method.name);
            if !members.insert(rust.clone()) {
                self.skip(
                    &module.name,
                    &py_name,
                    "method",
                    format!("its Rust name `{rust}` is taken"),
                );
                continue;
            }
            let options = unique_type(
                types,
                &format!("{ident}{}Options", names::camel(names::bare(&rust))),
            );
            let target = match method.kind {
                FunctionKind::Instance => Target::Method { name: &method.name },
                _ => Target::Function {
                    module: &class.module,
                    function: format!("{}.{}", class.name, method.name),
                },
            };
            let call = Call {
                python: format!("{python}.{}", method.name),
                rust,
                options,
                doc: method.doc.as_deref(),
                params: &method.params,
                out: self.out_in_class(&method.returns, path),
                target,
            };
            body.push('\n');
            let instance = matches!(method.kind, FunctionKind::Instance);
            let item = self.callable(&call, path, instance, &mut body, &mut after);
            self.report.generated.push(Item {
                kind: "method",
                ..item
            });
        }
        for prop in &class.properties {
            let rust = member_name(&prop.name);
            if !members.insert(rust.clone()) {
                let name = format!("{}.{}", class.name, prop.name);
                self.skip(
                    &module.name,
                    &name,
                    "property",
                    format!("its Rust name `{rust}` is taken"),
                );
                continue;
            }
            let out_ty = self.out_in_class(&prop.ty, path);
            let fallback = format!("The `{}` property of the object.", prop.name);
            body.push('\n');
            body.push_str(&docstring_comment(prop.doc.as_deref(), &fallback, None));
            writeln!(
                body,
                "pub async fn {rust}(&self) -> Result<{}, _rt::Error> {{",
                out_ty.rust()
            )
            .unwrap();
            writeln!(
                body,
                "    let returned = _rt::Ffi::attr_on(&self.target, &self.object, {:?}).await?;",
                prop.name
            )
            .unwrap();
            writeln!(
                body,
                "    {}",
                out_ty.convert("returned", "self.target.clone()")
            )
            .unwrap();
            writeln!(body, "}}").unwrap();
            let mut item = Item {
                kind: "property",
                python: format!("{python}.{}", prop.name),
                rust: format!("{rust}(&self) -> {}", out_ty.rust().replace("_rt::", "")),
                params: 0,
                typed_params: 0,
                typed_result: out_ty.is_typed(),
            };
            if prop.settable {
                let setter = format!("set_{}", names::bare(&rust));
                if members.insert(setter.clone()) {
                    let input = In::of(&prop.ty, &|m, n| self.class_path(path, m, n));
                    body.push('\n');
                    writeln!(body, "/// Sets the `{}` property of the object.", prop.name).unwrap();
                    writeln!(
                        body,
                        "pub async fn {setter}(&self, value: {}) -> Result<(), _rt::Error> {{",
                        input.rust()
                    )
                    .unwrap();
                    writeln!(
                        body,
                        "    _rt::Ffi::set_attr_on(&self.target, &self.object, {:?}, {}).await",
                        prop.name,
                        input.to_value("value")
                    )
                    .unwrap();
                    writeln!(body, "}}").unwrap();
                    item.rust
                        .push_str(&format!(", {setter}(&self, {})", input.rust()));
                }
            }
            self.report.generated.push(item);
        }
        for line in body.lines() {
            if line.is_empty() {
                out.push('\n');
            } else {
                writeln!(out, "    {line}").unwrap();
            }
        }
        writeln!(out, "}}").unwrap();
        out.push_str(&after);
        out.push('\n');
        for from in [format!("&{ident}"), ident.clone()] {
            let take = if from.starts_with('&') {
                "object.object.clone()"
            } else {
                "object.object"
            };
            writeln!(out, "impl From<{from}> for _rt::Value {{").unwrap();
            writeln!(out, "    fn from(object: {from}) -> Self {{").unwrap();
            writeln!(out, "        {take}").unwrap();
            writeln!(out, "    }}").unwrap();
            writeln!(out, "}}").unwrap();
        }
        self.report.generated.push(Item {
            kind: "class",
            python,
            rust: format!("struct {ident}"),
            params: 0,
            typed_params: 0,
            typed_result: true,
        });
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

    /// Splits a signature into what the Rust function takes.
    fn sig(&self, call: &Call<'_>, path: &[String]) -> Sig {
        let classes = |m: &str, n: &str| self.class_path(path, m, n);
        let mut used: HashSet<String> = LOCALS.iter().map(|s| s.to_string()).collect();
        let mut option_names: HashSet<String> =
            OPTION_HELPERS.iter().map(|s| s.to_string()).collect();
        let var_at = call
            .params
            .iter()
            .position(|p| p.kind == ParamKind::VarPositional);
        let mut sig = Sig {
            args: Vec::new(),
            varargs: None,
            options: Vec::new(),
            var_kwargs: false,
        };
        for (i, p) in call.params.iter().enumerate() {
            let input = In::of(&p.ty, &classes);
            match p.kind {
                ParamKind::PositionalOnly | ParamKind::PositionalOrKeyword => {
                    // Before `*args`, a defaulted parameter must be given
                    // positionally for `*args` to be passed at all.
                    let before_var = var_at.is_some_and(|v| i < v);
                    if p.default.is_none() || before_var {
                        sig.args.push(arg(p, input, false, &mut used));
                    } else {
                        // A stub's kinds are trusted as a runtime signature's
                        // would be (typeshed marks positional-only ones).
                        let positional = p.kind == ParamKind::PositionalOnly;
                        sig.options
                            .push(opt(p, input, positional, &mut option_names));
                    }
                }
                ParamKind::VarPositional => sig.varargs = Some(arg(p, input, false, &mut used)),
                ParamKind::KeywordOnly => {
                    if p.default.is_none() {
                        sig.args.push(arg(p, input, true, &mut used));
                    } else {
                        sig.options.push(opt(p, input, false, &mut option_names));
                    }
                }
                ParamKind::VarKeyword => sig.var_kwargs = true,
            }
        }
        sig
    }

    /// Renders one function, method or constructor (and its options
    /// struct, into `extra`: outside the `impl` of a class); returns its
    /// report item.
    fn callable(
        &self,
        call: &Call<'_>,
        path: &[String],
        instance: bool,
        out: &mut String,
        extra: &mut String,
    ) -> Item {
        let sig = self.sig(call, path);
        let mut params: Vec<String> = Vec::new();
        if instance {
            params.push("&self".into());
        } else {
            params.push("py: &impl _rt::Ffi".into());
        }
        for a in &sig.args {
            params.push(format!("{}: {}", a.rust, a.input.rust()));
        }
        if let Some(v) = &sig.varargs {
            params.push(format!(
                "{}: impl IntoIterator<Item = {}>",
                v.rust,
                varargs_item(&v.input)
            ));
        }
        if sig.has_options() {
            params.push(format!("options: {}", call.options));
        }
        let fallback = format!("Calls `{}`.", call.python);
        let python_sig = python_signature(call);
        out.push_str(&docstring_comment(call.doc, &fallback, Some(&python_sig)));
        if params.len() > 7 {
            writeln!(out, "#[allow(clippy::too_many_arguments)]").unwrap();
        }
        let ret = call.out.rust();
        writeln!(
            out,
            "pub async fn {}({}) -> Result<{ret}, _rt::Error> {{",
            call.rust,
            params.join(", ")
        )
        .unwrap();
        self.body(call, &sig, out);
        writeln!(out, "}}").unwrap();
        if sig.has_options() {
            extra.push('\n');
            options_struct(call, &sig, extra);
        }
        let shown: Vec<String> = params
            .iter()
            .map(|p| p.replace("impl _rt::", "impl ").replace("_rt::", ""))
            .collect();
        Item {
            kind: "",
            python: call.python.clone(),
            rust: format!(
                "{}({}) -> {}",
                call.rust,
                shown.join(", "),
                ret.replace("_rt::", "")
            ),
            params: sig.params(),
            typed_params: sig.typed(),
            typed_result: call.out.is_typed(),
        }
    }

    fn body(&self, call: &Call<'_>, sig: &Sig, out: &mut String) {
        let args_mut = sig.varargs.is_some() || sig.has_options();
        let keyword_args: Vec<&Arg> = sig.args.iter().filter(|a| a.keyword).collect();
        let has_kwargs = !keyword_args.is_empty() || sig.has_options();
        let values: Vec<String> = sig
            .args
            .iter()
            .filter(|a| !a.keyword)
            .map(|a| a.input.to_value(&a.rust))
            .collect();
        let decl = if args_mut {
            "let mut call_args"
        } else {
            "let call_args"
        };
        writeln!(
            out,
            "    {decl}: Vec<_rt::Value> = vec![{}];",
            values.join(", ")
        )
        .unwrap();
        if let Some(v) = &sig.varargs {
            writeln!(
                out,
                "    call_args.extend({}.into_iter().map({}));",
                v.rust,
                varargs_value(&v.input)
            )
            .unwrap();
        }
        if has_kwargs {
            let pairs: Vec<String> = keyword_args
                .iter()
                .map(|a| format!("({:?}.to_string(), {})", a.py, a.input.to_value(&a.rust)))
                .collect();
            let decl = if sig.has_options() {
                "let mut call_kwargs"
            } else {
                "let call_kwargs"
            };
            writeln!(
                out,
                "    {decl}: Vec<(String, _rt::Value)> = vec![{}];",
                pairs.join(", ")
            )
            .unwrap();
        }
        if sig.has_options() {
            writeln!(
                out,
                "    options.into_call_args({:?}, &mut call_args, &mut call_kwargs)?;",
                call.python
            )
            .unwrap();
        }
        let kwargs = if has_kwargs { "call_kwargs" } else { "()" };
        let needs_target = call.out.needs_target();
        let value = match &call.target {
            Target::Function { module, function } => {
                if needs_target {
                    writeln!(out, "    let py = _rt::Ffi::ffi_target(py).await?;").unwrap();
                }
                let on = if needs_target { "&py" } else { "py" };
                format!("_rt::Ffi::call({on}, {module:?}, {function:?}, call_args, {kwargs})")
            }
            Target::Constructor { module, class } => {
                writeln!(out, "    let py = _rt::Ffi::ffi_target(py).await?;").unwrap();
                format!("_rt::Ffi::call_class(&py, {module:?}, {class:?}, call_args, {kwargs})")
            }
            Target::Method { name } => format!(
                "_rt::Ffi::method_on(&self.target, &self.object, {name:?}, call_args, {kwargs})"
            ),
        };
        writeln!(out, "    let returned = {value}.await?;").unwrap();
        let target = match call.target {
            Target::Method { .. } => "self.target.clone()",
            _ => "py",
        };
        writeln!(out, "    {}", call.out.convert("returned", target)).unwrap();
    }
}

/// Why a function is left out, when it is.
fn unsupported(f: &Function) -> Option<String> {
    f.is_async
        .then(|| "coroutine function: the FFI calls it but does not await it".to_string())
}

/// A member name of a class wrapper, clear of the wrapper's own helpers.
fn member_name(name: &str) -> String {
    let rust = names::snake(name);
    if WRAPPER_HELPERS.contains(&names::bare(&rust)) {
        format!("{}_", names::bare(&rust))
    } else {
        rust
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

/// A free Rust name for parameter `p`.
fn free_name(p: &Param, used: &mut HashSet<String>) -> String {
    let mut rust = names::snake(&p.name);
    while !used.insert(names::bare(&rust).to_string()) {
        rust = format!("{}_", names::bare(&rust));
    }
    rust
}

fn arg(p: &Param, input: In, keyword: bool, used: &mut HashSet<String>) -> Arg {
    Arg {
        py: p.name.clone(),
        rust: free_name(p, used),
        input,
        keyword,
    }
}

fn opt(p: &Param, input: In, positional: bool, used: &mut HashSet<String>) -> Opt {
    Opt {
        py: p.name.clone(),
        rust: free_name(p, used),
        input,
        default: p.default.clone().unwrap_or_default(),
        positional,
    }
}

/// The item type of a `*args` parameter.
fn varargs_item(input: &In) -> String {
    match input {
        In::Bool | In::Int | In::Float => input.rust(),
        In::Str => "impl Into<String>".into(),
        _ => "impl _rt::IntoValue".into(),
    }
}

/// What maps one `*args` item to a `Value`.
fn varargs_value(input: &In) -> String {
    match input {
        In::Bool | In::Int | In::Float => "_rt::Value::from".into(),
        In::Str => "|x| _rt::Value::from(Into::<String>::into(x))".into(),
        _ => "_rt::IntoValue::into_value".into(),
    }
}

/// The options struct of `call`: one builder method per optional parameter.
fn options_struct(call: &Call<'_>, sig: &Sig, out: &mut String) {
    let name = &call.options;
    writeln!(
        out,
        "/// Optional arguments of `{}`: set the ones to pass, the others keep Python's defaults.",
        call.python
    )
    .unwrap();
    writeln!(out, "#[derive(Debug, Clone, Default)]").unwrap();
    writeln!(out, "#[must_use]").unwrap();
    writeln!(out, "pub struct {name} {{").unwrap();
    for o in &sig.options {
        writeln!(out, "    {}: Option<_rt::Value>,", o.rust).unwrap();
    }
    if sig.var_kwargs {
        writeln!(out, "    kwargs: Vec<(String, _rt::Value)>,").unwrap();
    }
    writeln!(out, "}}\n").unwrap();
    writeln!(out, "impl {name} {{").unwrap();
    writeln!(out, "    /// No argument set: Python's defaults.").unwrap();
    writeln!(out, "    pub fn new() -> Self {{").unwrap();
    // Not `Self::default()`: a parameter may be called `default`.
    writeln!(out, "        <Self as Default>::default()").unwrap();
    writeln!(out, "    }}").unwrap();
    for o in &sig.options {
        out.push('\n');
        let how = if o.positional {
            "positional"
        } else {
            "keyword"
        };
        writeln!(
            out,
            "    /// `{}` ({how}; Python's default: `{}`).",
            o.py,
            o.default.replace('`', "'")
        )
        .unwrap();
        writeln!(
            out,
            "    pub fn {}(mut self, value: {}) -> Self {{",
            o.rust,
            o.input.rust()
        )
        .unwrap();
        writeln!(
            out,
            "        self.{} = Some({});",
            o.rust,
            o.input.to_value("value")
        )
        .unwrap();
        writeln!(out, "        self").unwrap();
        writeln!(out, "    }}").unwrap();
    }
    if sig.var_kwargs {
        out.push('\n');
        writeln!(
            out,
            "    /// Any other keyword argument (the function takes `**kwargs`)."
        )
        .unwrap();
        writeln!(
            out,
            "    pub fn kwarg(mut self, name: impl Into<String>, value: impl _rt::IntoValue) -> Self {{"
        )
        .unwrap();
        writeln!(
            out,
            "        self.kwargs.push((name.into(), _rt::IntoValue::into_value(value)));"
        )
        .unwrap();
        writeln!(out, "        self").unwrap();
        writeln!(out, "    }}").unwrap();
    }
    out.push('\n');
    let positional: Vec<&Opt> = sig.options.iter().filter(|o| o.positional).collect();
    let unused = if positional.is_empty() { "_" } else { "" };
    let keywords = sig.var_kwargs || sig.options.iter().any(|o| !o.positional);
    let unused_kw = if keywords { "" } else { "_" };
    writeln!(
        out,
        "    fn into_call_args(self, {unused}function: &str, {unused}args: &mut Vec<_rt::Value>, {unused_kw}kwargs: &mut Vec<(String, _rt::Value)>) -> Result<(), _rt::Error> {{",
    )
    .unwrap();
    if !positional.is_empty() {
        let tail: Vec<String> = positional
            .iter()
            .map(|o| format!("({:?}, self.{})", o.py, o.rust))
            .collect();
        writeln!(
            out,
            "        _rt::positional_tail(function, [{}], args)?;",
            tail.join(", ")
        )
        .unwrap();
    }
    for o in sig.options.iter().filter(|o| !o.positional) {
        writeln!(
            out,
            "        if let Some(value) = self.{} {{ kwargs.push(({:?}.to_string(), value)); }}",
            o.rust, o.py
        )
        .unwrap();
    }
    if sig.var_kwargs {
        writeln!(out, "        kwargs.extend(self.kwargs);").unwrap();
    }
    writeln!(out, "        Ok(())").unwrap();
    writeln!(out, "    }}").unwrap();
    writeln!(out, "}}").unwrap();
}

/// The helpers every class wrapper has.
fn wrapper_helpers(python: &str) -> String {
    format!(
        r#"/// Wraps an object Python gave back (a ref, or a value it rebuilds,
/// such as a date); calls on it go through `target`.
pub fn from_parts(target: _rt::FfiTarget, object: _rt::Value) -> Result<Self, _rt::Error> {{
    if object.is_null() {{
        return Err(_rt::ConversionError::custom({python:?}, "None").into());
    }}
    Ok(Self {{ target, object }})
}}

/// Wraps an object Python gave back, for calls through `py`.
pub async fn from_value(py: &impl _rt::Ffi, object: _rt::Value) -> Result<Self, _rt::Error> {{
    Self::from_parts(_rt::Ffi::ffi_target(py).await?, object)
}}

/// The object, as it crosses to Python (usually a ref).
pub fn object(&self) -> &_rt::Value {{
    &self.object
}}

/// The ref to the object, when it is kept by Python (not rebuilt by value).
pub fn object_ref(&self) -> Option<&_rt::ObjectRef> {{
    match &self.object {{
        _rt::Value::Ref(object) => Some(object),
        _ => None,
    }}
}}

/// Where calls on the object go.
pub fn target(&self) -> &_rt::FfiTarget {{
    &self.target
}}
"#
    )
}

/// `name(a: float, /, b: int = 0, *, c: str = 'x') -> float`, from the
/// normalized types.
fn python_signature(call: &Call<'_>) -> String {
    let mut parts = Vec::new();
    let mut star_done = false;
    for (i, p) in call.params.iter().enumerate() {
        if p.kind == ParamKind::KeywordOnly && !star_done {
            parts.push("*".to_string());
            star_done = true;
        }
        let mut s = match p.kind {
            ParamKind::VarPositional => {
                star_done = true;
                format!("*{}", p.name)
            }
            ParamKind::VarKeyword => format!("**{}", p.name),
            _ => p.name.clone(),
        };
        let typed = p.ty != Type::Any;
        if typed {
            s.push_str(&format!(": {}", type_name(&p.ty)));
        }
        if let Some(default) = &p.default {
            // PEP 8: spaces around `=` only after an annotation.
            let eq = if typed { " = " } else { "=" };
            s.push_str(&format!("{eq}{default}"));
        }
        parts.push(s);
        let next_positional_only = call
            .params
            .get(i + 1)
            .is_some_and(|n| n.kind == ParamKind::PositionalOnly);
        if p.kind == ParamKind::PositionalOnly && !next_positional_only {
            parts.push("/".to_string());
        }
    }
    let name = &call.python;
    let ret = match &call.out {
        Out::Class(p) if p == "Self" => String::new(),
        _ => match &call.target {
            Target::Constructor { .. } => String::new(),
            _ => format!(" -> {}", returns_name(call)),
        },
    };
    format!("{name}({}){ret}", parts.join(", ")).replace('`', "'")
}

fn returns_name(call: &Call<'_>) -> String {
    // The described type is not kept on the call; the Rust type says what
    // the wrapper gives, the Python one is what matters here.
    match &call.out {
        Out::Value => "object".into(),
        other => rust_to_python(other),
    }
}

fn rust_to_python(out: &Out) -> String {
    match out {
        Out::Unit => "None".into(),
        Out::Bool => "bool".into(),
        Out::Int => "int".into(),
        Out::Float => "float".into(),
        Out::Str => "str".into(),
        Out::Bytes => "bytes".into(),
        Out::Ndarray => "ndarray".into(),
        Out::List(item) => format!("list[{}]", rust_to_python(item)),
        Out::Optional(inner) => format!("{} | None", rust_to_python(inner)),
        Out::Tuple(items) => format!(
            "tuple[{}]",
            items
                .iter()
                .map(rust_to_python)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Out::Class(path) => path.rsplit("::").next().unwrap_or(path).to_string(),
        Out::Value => "object".into(),
    }
}

/// A normalized type as Python would write it.
fn type_name(ty: &Type) -> String {
    match ty {
        Type::Any => "Any".into(),
        Type::None => "None".into(),
        Type::Bool => "bool".into(),
        Type::Int => "int".into(),
        Type::Float => "float".into(),
        Type::Complex => "complex".into(),
        Type::Str => "str".into(),
        Type::Bytes => "bytes".into(),
        Type::Ndarray => "ndarray".into(),
        Type::List { item } => format!("list[{}]", type_name(item)),
        Type::Set { item } => format!("set[{}]", type_name(item)),
        Type::Tuple { items } => format!(
            "tuple[{}]",
            items.iter().map(type_name).collect::<Vec<_>>().join(", ")
        ),
        Type::Dict { key, value } => format!("dict[{}, {}]", type_name(key), type_name(value)),
        Type::Optional { inner } => format!("{} | None", type_name(inner)),
        Type::Union { options } => options
            .iter()
            .map(type_name)
            .collect::<Vec<_>>()
            .join(" | "),
        Type::Class { name, .. } => name.clone(),
        Type::Iterator { item } => format!("Iterator[{}]", type_name(item)),
        Type::Callable => "Callable".into(),
    }
}

/// A doc comment: the summary (Markdown), the Python signature, and the
/// rest of the docstring as text (never as Markdown: docstrings hold `>>>`
/// examples and indented blocks that rustdoc would take for Rust tests).
fn doc_comment(summary: &str, signature: Option<&str>, rest: Option<&str>) -> String {
    let mut out = String::new();
    writeln!(out, "/// {}", summary.trim()).unwrap();
    if let Some(signature) = signature {
        writeln!(out, "///").unwrap();
        writeln!(out, "/// Python: `{signature}`").unwrap();
    }
    if let Some(doc) = rest.map(str::trim_end).filter(|d| !d.trim().is_empty()) {
        let longest_run = doc.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest_run.max(2) + 1);
        writeln!(out, "///").unwrap();
        writeln!(out, "/// {fence}text").unwrap();
        for line in doc.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                writeln!(out, "///").unwrap();
            } else {
                writeln!(out, "/// {line}").unwrap();
            }
        }
        writeln!(out, "/// {fence}").unwrap();
    }
    out
}

/// A docstring split into its first paragraph, joined into one line and
/// made literal for Markdown, and the rest; `None` for no docstring.
fn split_doc(doc: Option<&str>) -> Option<(String, String)> {
    let doc = doc?.trim();
    if doc.is_empty() {
        return None;
    }
    let mut lines = doc.lines();
    let first: Vec<&str> = lines
        .by_ref()
        .take_while(|l| !l.trim().is_empty())
        .map(str::trim)
        .collect();
    let rest: Vec<&str> = lines.skip_while(|l| l.trim().is_empty()).collect();
    Some((escape_markdown(&first.join(" ")), rest.join("\n")))
}

/// A doc comment for a docstring, or for `fallback` when there is none.
fn docstring_comment(doc: Option<&str>, fallback: &str, signature: Option<&str>) -> String {
    match split_doc(doc) {
        Some((summary, rest)) => doc_comment(&summary, signature, Some(&rest)),
        None => doc_comment(fallback, signature, None),
    }
}

/// Text Markdown would read as links, HTML or code, made literal.
fn escape_markdown(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | '[' | ']' | '<' | '>' | '`' | '*' | '_' | '#') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests;
