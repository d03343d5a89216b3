//! Doc comments and Python signatures in generated code.

use std::fmt::Write as _;

use super::call::Call;
use crate::describe::{ParamKind, Type};

/// `name(a: float, /, b: int = 0, *, c: str = 'x') -> float`, from the
/// normalized types (`Any` where there is none: `object` for a result).
pub(super) fn python_signature(call: &Call<'_>) -> String {
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
            s.push_str(&format!("{eq}{}", one_line(default)));
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
    let ret = match call.returns {
        Some(Type::Any) => " -> object".to_string(),
        Some(ty) => format!(" -> {}", type_name(ty)),
        None => String::new(),
    };
    format!("{}({}){ret}", call.python, parts.join(", ")).replace('`', "'")
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
pub(super) fn doc_comment(summary: &str, signature: Option<&str>, rest: Option<&str>) -> String {
    let mut out = String::new();
    writeln!(out, "/// {}", flat(summary.trim())).unwrap();
    if let Some(signature) = signature {
        writeln!(out, "///").unwrap();
        writeln!(out, "/// Python: `{}`", flat(signature)).unwrap();
    }
    let rest = rest.map(|r| r.replace('\r', ""));
    if let Some(doc) = rest
        .as_deref()
        .map(str::trim_end)
        .filter(|d| !d.trim().is_empty())
    {
        let longest_run = doc.split(|c| c != '`').map(str::len).max().unwrap_or(0);
        let fence = "`".repeat(longest_run.max(2) + 1);
        writeln!(out, "///").unwrap();
        writeln!(out, "/// {fence}text").unwrap();
        for line in doc.lines() {
            let line = printable(line.trim_end());
            let line = line.as_str();
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
pub(super) fn docstring_comment(
    doc: Option<&str>,
    fallback: &str,
    signature: Option<&str>,
) -> String {
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

/// `text` on one line, for a comment: line breaks become spaces.
fn flat(text: &str) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    printable(&flat)
}

/// A default's repr for a comment: on one line, cut at 80 characters (it
/// may be a whole array).
pub(super) fn one_line(text: &str) -> String {
    const MAX: usize = 80;
    let flat = flat(text);
    match flat.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &flat[..cut]),
        None => flat,
    }
}

/// `text` with the control characters a comment cannot show (a doc
/// comment may not even hold a bare CR) replaced by U+FFFD.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                '\u{fffd}'
            } else {
                c
            }
        })
        .collect()
}
