//! # snakepit-codegen
//!
//! Typed Rust wrappers for Python libraries, generated from what a Python
//! interpreter says of them: signatures from `inspect`, types from hints and
//! stubs (typeshed for the standard library, a package's own `.pyi` files),
//! docstrings, `__all__`. The wrappers call the library through snakepit's
//! universal FFI, so any `snakepit::Ffi` (a session, the runtime, a host
//! tool's context) runs them:
//!
//! ```text
//! $ snakepit gen rust math --functions sqrt,floor,gcd --out src/math.rs
//! ```
//! ```ignore
//! mod math;
//! let root: f64 = math::sqrt(&snakepit, 16.0).await?;
//! ```
//!
//! - [`describe`]: the description the Python side returns (`snakepit_bridge.codegen`).
//! - [`render`]: that description as Rust source, and a [`Report`] of its coverage.
//! - [`Header`]: what a generated file records of its origin (module version,
//!   settings), read back by drift checks.
//! - [`Builder`]: the `build.rs` helper (also `snakepit::codegen::Builder`):
//!   wrappers for a list like `["numpy", "math:sqrt,floor", "pathlib:Path"]`,
//!   reused while the installed versions match, and a check mode that fails
//!   when they no longer do.
//!
//! This crate only generates; the generated code needs the `snakepit` crate
//! (`snakepit::codegen::rt`) to run.
#![warn(missing_docs)]

mod builder;
pub mod describe;
mod header;
mod names;
mod render;
mod report;
mod types;

pub use builder::{Builder, CodegenError, Drift, Generated, GeneratedModule, Python, Spec};
pub use describe::{Description, MethodScope, Mode, Settings, Type};
pub use header::{GENERATOR, Header};
pub use render::{RenderError, RenderOptions, Rendered, render};
pub use report::{Item, Report};
