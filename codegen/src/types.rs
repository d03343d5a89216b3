//! Normalized Python types as Rust types: what a parameter takes, what a
//! function gives back, and the code converting between them and `Value`.
//!
//! Where a type has no faithful Rust form the wrappers fall back to
//! `impl IntoValue` (parameters) and `Value` (results), so nothing is typed
//! tighter than Python would accept.

use crate::describe::Type;

/// Finds the Rust path of a generated class wrapper, from the module being
/// rendered; `None` when that class is not generated.
pub type ClassPaths<'a> = &'a dyn Fn(&str, &str) -> Option<String>;

/// What a parameter takes.
#[derive(Debug, Clone, PartialEq)]
pub enum In {
    /// `bool`.
    Bool,
    /// `i64`.
    Int,
    /// `f64`.
    Float,
    /// `&str`.
    Str,
    /// `&[u8]`.
    Bytes,
    /// `&Wrapper`: a generated class.
    Class(String),
    /// `impl IntoIterator<Item = T>` of a scalar.
    Items(Box<In>),
    /// `Option<T>`: `None` passes Python's `None`.
    Optional(Box<In>),
    /// `impl IntoValue`.
    Any,
}

impl In {
    /// The input form of `ty`.
    pub fn of(ty: &Type, classes: ClassPaths<'_>) -> In {
        match ty {
            Type::Bool => In::Bool,
            Type::Int => In::Int,
            Type::Float => In::Float,
            Type::Str => In::Str,
            Type::Bytes => In::Bytes,
            Type::Class { module, name } => classes(module, name).map_or(In::Any, In::Class),
            Type::List { item } => match In::of(item, classes) {
                item @ (In::Bool | In::Int | In::Float | In::Str) => In::Items(Box::new(item)),
                _ => In::Any,
            },
            Type::Optional { inner } => match In::of(inner, classes) {
                inner @ (In::Bool | In::Int | In::Float | In::Str | In::Bytes | In::Class(_)) => {
                    In::Optional(Box::new(inner))
                }
                _ => In::Any,
            },
            _ => In::Any,
        }
    }

    /// Whether the Rust side checks it (anything but `impl IntoValue`).
    pub fn is_typed(&self) -> bool {
        !matches!(self, In::Any)
    }

    /// The parameter's Rust type.
    pub fn rust(&self) -> String {
        match self {
            In::Bool => "bool".into(),
            In::Int => "i64".into(),
            In::Float => "f64".into(),
            In::Str => "&str".into(),
            In::Bytes => "&[u8]".into(),
            In::Class(path) => format!("&{path}"),
            In::Items(item) => format!("impl IntoIterator<Item = {}>", item.item()),
            In::Optional(inner) => format!("Option<{}>", inner.rust()),
            In::Any => "impl _rt::IntoValue".into(),
        }
    }

    /// The type of one item of an `Items`.
    fn item(&self) -> String {
        match self {
            In::Str => "impl Into<String>".into(),
            other => other.rust(),
        }
    }

    /// An expression turning `expr` (of [`rust`](Self::rust)) into a `Value`.
    pub fn to_value(&self, expr: &str) -> String {
        match self {
            In::Bool | In::Int | In::Float | In::Str | In::Bytes | In::Class(_) => {
                format!("_rt::Value::from({expr})")
            }
            In::Items(item) => {
                let one = match **item {
                    In::Str => "|x| _rt::Value::from(Into::<String>::into(x))".to_string(),
                    _ => "_rt::Value::from".to_string(),
                };
                format!("_rt::Value::List({expr}.into_iter().map({one}).collect())")
            }
            In::Optional(inner) => format!(
                "match {expr} {{ Some(x) => {}, None => _rt::Value::Null }}",
                inner.to_value("x")
            ),
            In::Any => format!("_rt::IntoValue::into_value({expr})"),
        }
    }
}

/// What a call gives back.
#[derive(Debug, Clone, PartialEq)]
pub enum Out {
    /// `()`: the value is dropped.
    Unit,
    /// `bool`.
    Bool,
    /// `i64` (an int beyond 64 bits is a conversion error).
    Int,
    /// `f64`.
    Float,
    /// `String`.
    Str,
    /// `Bytes`.
    Bytes,
    /// `NdArray`.
    Ndarray,
    /// `Vec<T>` of a scalar.
    List(Box<Out>),
    /// `Option<T>` of a scalar or a class.
    Optional(Box<Out>),
    /// A tuple of scalars.
    Tuple(Vec<Out>),
    /// A generated class wrapper.
    Class(String),
    /// `PyStream`: the items of an iterator or generator, as they come.
    Stream,
    /// `Value`, as it came.
    Value,
}

impl Out {
    /// The output form of `ty`.
    pub fn of(ty: &Type, classes: ClassPaths<'_>) -> Out {
        match ty {
            Type::None => Out::Unit,
            Type::Bool => Out::Bool,
            Type::Int => Out::Int,
            Type::Float => Out::Float,
            Type::Str => Out::Str,
            Type::Bytes => Out::Bytes,
            Type::Ndarray => Out::Ndarray,
            Type::Iterator { .. } => Out::Stream,
            Type::Class { module, name } => classes(module, name).map_or(Out::Value, Out::Class),
            Type::List { item } => match Out::of(item, classes) {
                item if item.is_scalar() => Out::List(Box::new(item)),
                _ => Out::Value,
            },
            Type::Optional { inner } => match Out::of(inner, classes) {
                inner if inner.is_scalar() || matches!(inner, Out::Class(_)) => {
                    Out::Optional(Box::new(inner))
                }
                _ => Out::Value,
            },
            Type::Tuple { items } if (1..=4).contains(&items.len()) => {
                let items: Vec<Out> = items.iter().map(|t| Out::of(t, classes)).collect();
                if items.iter().all(Out::is_scalar) {
                    Out::Tuple(items)
                } else {
                    Out::Value
                }
            }
            _ => Out::Value,
        }
    }

    fn is_scalar(&self) -> bool {
        matches!(
            self,
            Out::Bool | Out::Int | Out::Float | Out::Str | Out::Bytes | Out::Ndarray
        )
    }

    /// Whether the Rust side checks it (anything but `Value`).
    pub fn is_typed(&self) -> bool {
        !matches!(self, Out::Value)
    }

    /// Whether building it needs the call's target (a class wrapper keeps one).
    pub fn needs_target(&self) -> bool {
        match self {
            Out::Class(_) => true,
            Out::Optional(inner) => inner.needs_target(),
            _ => false,
        }
    }

    /// The result's Rust type.
    pub fn rust(&self) -> String {
        match self {
            Out::Unit => "()".into(),
            Out::Bool => "bool".into(),
            Out::Int => "i64".into(),
            Out::Float => "f64".into(),
            Out::Str => "String".into(),
            Out::Bytes => "_rt::Bytes".into(),
            Out::Ndarray => "_rt::NdArray".into(),
            Out::List(item) => format!("Vec<{}>", item.rust()),
            Out::Optional(inner) => format!("Option<{}>", inner.rust()),
            Out::Tuple(items) => {
                let items: Vec<String> = items.iter().map(Out::rust).collect();
                if items.len() == 1 {
                    format!("({},)", items[0])
                } else {
                    format!("({})", items.join(", "))
                }
            }
            Out::Class(path) => path.clone(),
            Out::Stream => "_rt::PyStream".into(),
            Out::Value => "_rt::Value".into(),
        }
    }

    /// A block turning `value` (a `Value`) into `Result<rust(), Error>`;
    /// `owned` names the `FfiTarget` a class wrapper keeps, `borrowed` an
    /// `&impl Ffi` a stream fetches its items through.
    pub fn convert(&self, value: &str, owned: &str, borrowed: &str) -> String {
        match self {
            Out::Unit => format!("{{ drop({value}); Ok(()) }}"),
            Out::Value => format!("Ok({value})"),
            Out::Class(path) => format!("{path}::from_parts({owned}, {value})"),
            Out::Stream => format!("_rt::into_stream({borrowed}, {value}).await"),
            Out::Optional(inner) if inner.needs_target() => format!(
                "if {value}.is_null() {{ Ok(None) }} else {{ {}.map(Some) }}",
                inner.convert(value, owned, borrowed)
            ),
            other => format!("Ok({value}.extract::<{}>()?)", other.rust()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: &str, _: &str) -> Option<String> {
        None
    }

    fn path(module: &str, name: &str) -> Option<String> {
        (module == "pathlib" && name == "Path").then(|| "Path".to_string())
    }

    #[test]
    fn scalars_are_typed_both_ways() {
        assert_eq!(In::of(&Type::Float, &none).rust(), "f64");
        assert_eq!(Out::of(&Type::Float, &none).rust(), "f64");
        assert_eq!(In::of(&Type::Str, &none).rust(), "&str");
        assert_eq!(Out::of(&Type::Str, &none).rust(), "String");
        assert_eq!(Out::of(&Type::None, &none).rust(), "()");
    }

    #[test]
    fn what_rust_cannot_type_stays_a_value() {
        let union = Type::Union {
            options: vec![Type::Str, Type::Int],
        };
        assert_eq!(In::of(&union, &none), In::Any);
        assert_eq!(Out::of(&union, &none), Out::Value);
        let list_of_any = Type::List {
            item: Box::new(Type::Any),
        };
        assert_eq!(In::of(&list_of_any, &none), In::Any);
        assert_eq!(Out::of(&list_of_any, &none), Out::Value);
    }

    #[test]
    fn classes_are_typed_only_when_generated() {
        let ty = Type::Class {
            module: "pathlib".into(),
            name: "Path".into(),
        };
        assert_eq!(In::of(&ty, &path).rust(), "&Path");
        assert_eq!(Out::of(&ty, &path).rust(), "Path");
        assert_eq!(In::of(&ty, &none), In::Any);
        let opt = Type::Optional {
            inner: Box::new(ty),
        };
        assert_eq!(Out::of(&opt, &path).rust(), "Option<Path>");
        assert!(Out::of(&opt, &path).needs_target());
    }

    #[test]
    fn sequences_of_scalars_become_iterators_and_vecs() {
        let ints = Type::List {
            item: Box::new(Type::Int),
        };
        assert_eq!(In::of(&ints, &none).rust(), "impl IntoIterator<Item = i64>");
        assert_eq!(Out::of(&ints, &none).rust(), "Vec<i64>");
        let pair = Type::Tuple {
            items: vec![Type::Float, Type::Int],
        };
        assert_eq!(Out::of(&pair, &none).rust(), "(f64, i64)");
        let lines = Type::Iterator {
            item: Box::new(Type::Str),
        };
        assert_eq!(Out::of(&lines, &none).rust(), "_rt::PyStream");
        assert_eq!(
            Out::of(&lines, &none).convert("v", "t", "&t"),
            "_rt::into_stream(&t, v).await"
        );
    }
}
