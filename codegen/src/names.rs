//! Python names as Rust identifiers.

/// Words Rust reserves (strict and reserved keywords of edition 2024).
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut",
    "pub", "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["self", "Self", "super", "crate", "_"];

/// `name` as a Rust identifier: a keyword becomes a raw identifier
/// (`r#type`), or gets a trailing `_` where Rust allows no raw form.
pub fn ident(name: &str) -> String {
    if NOT_RAW.contains(&name) {
        format!("{name}_")
    } else if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

/// A Python function, method, parameter or module name in snake case
/// (`isNaN` → `is_na_n`, `NINF` → `ninf`), as an identifier.
pub fn snake(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_uppercase() {
            if prev_lower {
                out.push('_');
            }
            out.extend(c.to_lowercase());
            prev_lower = false;
        } else {
            out.push(c);
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    ident(&out)
}

/// A Python class name in upper camel case (`date` → `Date`,
/// `_private_thing` → `PrivateThing`), as an identifier.
pub fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            out.extend(first.to_uppercase());
            out.push_str(chars.as_str());
        }
    }
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, 'X');
    }
    ident(&out)
}

/// The name without a raw prefix, to build other names from.
pub fn bare(ident: &str) -> &str {
    ident.strip_prefix("r#").unwrap_or(ident)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_become_raw_or_get_an_underscore() {
        assert_eq!(ident("type"), "r#type");
        assert_eq!(ident("where"), "r#where");
        assert_eq!(ident("self"), "self_");
        assert_eq!(ident("mean"), "mean");
    }

    #[test]
    fn python_names_become_rust_case() {
        assert_eq!(snake("isNaN"), "is_na_n");
        assert_eq!(snake("NINF"), "ninf");
        assert_eq!(snake("log1p"), "log1p");
        assert_eq!(snake("in"), "r#in");
        assert_eq!(camel("date"), "Date");
        assert_eq!(camel("JSONDecoder"), "JSONDecoder");
        assert_eq!(camel("_private_thing"), "PrivateThing");
        assert_eq!(camel("Self"), "Self_");
    }
}
