//! The coverage report of a generation (`snakepit gen rust --report`): what
//! was generated, how much of it is typed, and what was skipped and why.

use serde::Serialize;

use crate::describe::Skip;

/// One generated item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// `function`, `class`, `constructor`, `method` or `property`.
    pub kind: &'static str,
    /// Its Python path (`math.sqrt`, `pathlib.Path.exists`).
    pub python: String,
    /// Its Rust signature, shortened (`sqrt(x: f64) -> f64`).
    pub rust: String,
    /// Parameters it has.
    pub params: usize,
    /// Of those, how many have a Rust type (not `impl IntoValue`).
    pub typed_params: usize,
    /// Whether its result has a Rust type (not `Value`).
    pub typed_result: bool,
}

/// What a generation covered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The Python module.
    pub module: String,
    /// Its version.
    pub version: String,
    /// The interpreter's version.
    pub python: String,
    /// What was generated, in file order.
    pub generated: Vec<Item>,
    /// What was left out: by the Python side (no signature, too many
    /// methods, ...) and by the generator (names that collide in Rust,
    /// coroutine functions).
    pub skipped: Vec<Skip>,
}

impl Report {
    fn count(&self, kind: &str) -> usize {
        self.generated.iter().filter(|i| i.kind == kind).count()
    }

    /// `(typed, all)` parameters of the generated items.
    pub fn typed_params(&self) -> (usize, usize) {
        self.generated
            .iter()
            .fold((0, 0), |(t, a), i| (t + i.typed_params, a + i.params))
    }

    /// `(typed, all)` results of the generated items (classes have none).
    pub fn typed_results(&self) -> (usize, usize) {
        let calls = self.generated.iter().filter(|i| i.kind != "class");
        calls.fold((0, 0), |(t, a), i| (t + usize::from(i.typed_result), a + 1))
    }

    /// One line: `3 functions, 1 classes (2 methods, 4 properties), 0 skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} functions, {} classes ({} methods, {} properties), {} skipped",
            self.count("function"),
            self.count("class"),
            self.count("method"),
            self.count("property"),
            self.skipped.len()
        )
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "coverage of `{}` {} (Python {})\n",
            self.module, self.version, self.python
        );
        out.push_str(&format!(
            "generated: {} functions, {} classes ({} constructors, {} methods, {} properties)\n",
            self.count("function"),
            self.count("class"),
            self.count("constructor"),
            self.count("method"),
            self.count("property"),
        ));
        let (tp, ap) = self.typed_params();
        let (tr, ar) = self.typed_results();
        out.push_str(&format!(
            "typed: {tp} of {ap} parameters, {tr} of {ar} results (the rest take `impl IntoValue` or give `Value`)\n"
        ));
        let width = self
            .generated
            .iter()
            .map(|i| i.python.len())
            .chain(
                self.skipped
                    .iter()
                    .map(|s| s.module.len() + s.name.len() + 1),
            )
            .max()
            .unwrap_or(0);
        for item in &self.generated {
            out.push_str(&format!(
                "  {:<11} {:<width$}  {}\n",
                item.kind, item.python, item.rust
            ));
        }
        out.push_str(&format!("skipped: {}\n", self.skipped.len()));
        for skip in &self.skipped {
            let name = format!("{}.{}", skip.module, skip.name);
            out.push_str(&format!(
                "  {:<11} {:<width$}  {}\n",
                skip.kind, name, skip.reason
            ));
        }
        out
    }
}
