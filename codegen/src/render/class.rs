//! One class: a struct holding the object and where calls on it go, its
//! constructor, methods and property getters (setters where Python has
//! them), its helpers, and its conversions into `Value`.

use std::collections::HashSet;
use std::fmt::Write as _;

use super::call::{Call, Target, unsupported};
use super::docs::{doc_comment, docstring_comment};
use super::{Renderer, unique_type};
use crate::describe::{Class, FunctionKind, Module};
use crate::names;
use crate::report::Item;
use crate::types::{In, Out};

/// Names a Python name may not take in a class wrapper (its own helpers).
const WRAPPER_HELPERS: &[&str] = &[
    "new",
    "from_parts",
    "from_value",
    "object",
    "object_ref",
    "target",
];
impl Renderer<'_> {
    pub(super) fn class(
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
                returns: None,
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
                returns: Some(&method.returns),
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
                out_ty.convert("returned", "self.target.clone()", "&self.target")
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
