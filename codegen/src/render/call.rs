//! One function, method or constructor: its signature split into what the
//! Rust function takes (required parameters, `*args`, an options struct for
//! the rest), its body (the FFI call and the conversion of the result), and
//! its options struct with a builder.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::Renderer;
use super::docs::{docstring_comment, one_line, python_signature};
use crate::describe::{Function, Param, ParamKind, Type};
use crate::names;
use crate::report::Item;
use crate::types::{In, Out};

/// One parameter the Rust function takes.
pub(super) struct Arg {
    pub(super) py: String,
    pub(super) rust: String,
    pub(super) input: In,
    pub(super) keyword: bool,
}

/// One optional parameter, set through the options builder.
pub(super) struct Opt {
    pub(super) py: String,
    pub(super) rust: String,
    pub(super) input: In,
    pub(super) default: String,
    pub(super) positional: bool,
}

/// A Python signature split the way the Rust function takes it.
pub(super) struct Sig {
    pub(super) args: Vec<Arg>,
    pub(super) varargs: Option<Arg>,
    pub(super) options: Vec<Opt>,
    pub(super) var_kwargs: bool,
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
pub(super) enum Target<'a> {
    /// `module.function(...)`, on `py`.
    Function { module: &'a str, function: String },
    /// `module.Class(...)`, on `py`.
    Constructor { module: &'a str, class: &'a str },
    /// `obj.name(...)`, on the wrapper's own target.
    Method { name: &'a str },
}

/// One callable to render.
pub(super) struct Call<'a> {
    pub(super) python: String,
    pub(super) rust: String,
    pub(super) options: String,
    pub(super) doc: Option<&'a str>,
    pub(super) params: &'a [Param],
    pub(super) out: Out,
    /// The Python result type, for the docs (`None`: a constructor).
    pub(super) returns: Option<&'a Type>,
    pub(super) target: Target<'a>,
}

/// Names a parameter may not take: the generated function's own locals.
pub(super) const LOCALS: &[&str] = &["py", "options", "call_args", "call_kwargs", "returned"];
/// Names a parameter may not take in an options builder.
const OPTION_HELPERS: &[&str] = &["new", "kwarg", "kwargs", "into_call_args"];

impl Renderer<'_> {
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
    pub(super) fn callable(
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
        let (owned, borrowed) = match call.target {
            Target::Method { .. } => ("self.target.clone()", "&self.target"),
            _ if needs_target || matches!(call.target, Target::Constructor { .. }) => ("py", "&py"),
            _ => ("py", "py"),
        };
        writeln!(out, "    {}", call.out.convert("returned", owned, borrowed)).unwrap();
    }
}

/// Why a function is left out, when it is.
pub(super) fn unsupported(f: &Function) -> Option<String> {
    f.is_async
        .then(|| "coroutine function: the FFI calls it but does not await it".to_string())
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
            one_line(&o.default).replace('`', "'")
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
