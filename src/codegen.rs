//! Typed wrappers for Python libraries: `snakepit gen rust` and the
//! `build.rs` helper. Everything of the `snakepit-codegen` crate is here
//! ([`Builder`], [`render`], [`Header`], ...); a build script that wants
//! fewer dependencies can use that crate directly.
//!
//! ```no_run
//! // build.rs (with `snakepit` as a build dependency)
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     snakepit::codegen::Builder::new()
//!         .modules(["numpy:mean,std,array", "math:sqrt,floor", "pathlib:Path"])
//!         .generate()?;
//!     Ok(())
//! }
//! ```
//!
//! [`rt`] is what the generated code calls; see `docs/codegen.md`.

pub use snakepit_codegen::*;

/// What generated wrappers name at run time. Not for hand-written code:
/// use [`Ffi`](crate::Ffi) directly.
pub mod rt {
    pub use bytes::Bytes;
    pub use snakepit_actors::Error;
    pub use snakepit_actors::ffi::{Ffi, FfiTarget, PyStream};
    pub use snakepit_proto::{ConversionError, IntoValue, NdArray, ObjectRef, Value};

    /// Appends the set ones of a function's optional positional parameters
    /// (`tail`, in order) to `args`. Python fills positional parameters from
    /// the left, so one set after one left unset cannot be passed:
    /// [`Error::BadArguments`] naming both.
    pub fn positional_tail<const N: usize>(
        function: &str,
        tail: [(&str, Option<Value>); N],
        args: &mut Vec<Value>,
    ) -> Result<(), Error> {
        let mut unset: Option<&str> = None;
        for (name, value) in tail {
            match (value, unset) {
                (Some(value), None) => args.push(value),
                (Some(_), Some(gap)) => {
                    return Err(Error::BadArguments {
                        tool: function.to_string(),
                        parameter: Some(name.to_string()),
                        message: format!(
                            "`{name}` is passed by position, after `{gap}`: set `{gap}` too"
                        ),
                    });
                }
                (None, _) => unset = unset.or(Some(name)),
            }
        }
        Ok(())
    }

    /// The items of what a function returned as a stream: an iterator kept
    /// by Python (a stream ref, fetched in batches through `py`), or a
    /// sequence that came whole.
    pub async fn into_stream(py: &impl Ffi, value: Value) -> Result<PyStream, Error> {
        match value {
            Value::StreamRef(stream) => Ok(py.stream_ref(&stream).await?.into_stream()),
            Value::List(items)
            | Value::Tuple(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => Ok(PyStream::from_values(items)),
            other => Err(ConversionError::custom("an iterator", other.type_name()).into()),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_positional_tail_stops_at_the_first_gap() {
            let mut args = vec![Value::from(1)];
            positional_tail("f", [("a", Some(Value::from(2))), ("b", None)], &mut args).unwrap();
            assert_eq!(args, vec![Value::from(1), Value::from(2)]);
            let err = positional_tail("f", [("a", None), ("b", Some(Value::from(3)))], &mut args)
                .unwrap_err();
            assert!(
                matches!(&err, Error::BadArguments { parameter: Some(p), .. } if p == "b"),
                "{err}"
            );
        }
    }
}
