//! `snakepit new adapter NAME`: writes a working adapter package (the adapter,
//! its pytest tests, a configuration that runs it and a README) and prints the
//! commands that run it (`--json`: as one object). The configuration's paths
//! are relative to it, so the package can move.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

#[derive(Args, Debug)]
pub struct NewArgs {
    #[command(subcommand)]
    what: NewCommand,
}

#[derive(Subcommand, Debug)]
enum NewCommand {
    /// Write an adapter package `DIR/NAME`: `adapter.py`, `tests/`,
    /// `snakepit.toml` and `README.md`.
    Adapter(AdapterArgs),
}

#[derive(Args, Debug)]
struct AdapterArgs {
    /// Package name; a Python identifier such as `text_tools`.
    name: String,
    /// Derive from `ThreadSafeAdapter` and run in the thread profile.
    #[arg(long)]
    thread_safe: bool,
    /// Directory to create the package in.
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// Print what was written and the commands as one JSON object.
    #[arg(long)]
    json: bool,
}

pub async fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        NewCommand::Adapter(args) => new_adapter(&args),
    }
}

fn new_adapter(args: &AdapterArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    check_name(name)?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let parent = std::fs::canonicalize(&args.dir)
        .with_context(|| format!("cannot resolve {}", args.dir.display()))?;
    let root = parent.join(name);
    match std::fs::create_dir(&root) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => anyhow::bail!(
            "{} already exists; refusing to overwrite it (choose another NAME or --dir)",
            root.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", root.display())),
    }
    let template = Template {
        name,
        class: class_name(name),
        thread_safe: args.thread_safe,
    };
    if let Err(err) = write_package(&root, &template) {
        // Leave nothing half-written behind: the directory is ours, we just made it.
        let _ = std::fs::remove_dir_all(&root);
        return Err(err);
    }

    let commands = template.commands(&root);
    if args.json {
        let report = serde_json::json!({
            "package": root,
            "class": template.class,
            "files": FILES.map(|file| root.join(file)),
            "config": root.join(CONFIG_FILE),
            "commands": {
                "greet": commands.greet,
                "count": commands.count,
                "test": commands.test,
            },
        });
        println!("{report:#}");
        return Ok(ExitCode::SUCCESS);
    }
    println!("Created {} in {}:", template.class, root.display());
    for file in FILES {
        println!("  {}", root.join(file).display());
    }
    println!("\nRun its tools through a snakepit worker:\n");
    println!("  {}", commands.greet);
    println!("  {}", commands.count);
    println!("\nRun its tests with the pool's Python (it has pytest and the bridge):\n");
    println!("  {}", commands.test);
    Ok(ExitCode::SUCCESS)
}

/// The configuration file, in the package.
const CONFIG_FILE: &str = "snakepit.toml";

/// The files of a package, relative to its root, in the order
/// `write_package` writes them.
const FILES: [&str; 5] = [
    "__init__.py",
    "adapter.py",
    "tests/test_adapter.py",
    CONFIG_FILE,
    "README.md",
];

/// Python keywords, which cannot name a package.
const KEYWORDS: &[&str] = &[
    "False", "None", "True", "and", "as", "assert", "async", "await", "break", "class", "continue",
    "def", "del", "elif", "else", "except", "finally", "for", "from", "global", "if", "import",
    "in", "is", "lambda", "nonlocal", "not", "or", "pass", "raise", "return", "try", "while",
    "with", "yield",
];

/// Accepts names Python can import as a package and that do not hide the bridge.
fn check_name(name: &str) -> anyhow::Result<()> {
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest_ok = name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    anyhow::ensure!(
        first_ok && rest_ok,
        "`{name}` is not a valid Python identifier: use letters, digits and underscores, \
         not starting with a digit (for example `{}`)",
        suggestion(name)
    );
    anyhow::ensure!(
        !KEYWORDS.contains(&name),
        "`{name}` is a Python keyword and cannot name a package"
    );
    anyhow::ensure!(
        name != "snakepit_bridge",
        "`snakepit_bridge` would hide the bridge package itself; choose another name"
    );
    Ok(())
}

/// A valid identifier close to `name`, for the error message.
fn suggestion(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if !s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        s.insert_str(0, "my_");
    }
    s
}

/// `text_tools` -> `TextToolsAdapter` (no second `Adapter` for `my_adapter`).
fn class_name(name: &str) -> String {
    let mut class = String::new();
    for part in name.split('_') {
        let mut chars = part.chars();
        if let Some(first) = chars.next() {
            class.push(first.to_ascii_uppercase());
            class.extend(chars);
        }
    }
    if !class.starts_with(|c: char| c.is_ascii_alphabetic()) {
        class.insert(0, '_');
    }
    if !class.ends_with("Adapter") {
        class.push_str("Adapter");
    }
    class
}

/// What the generated files are made of.
struct Template<'a> {
    name: &'a str,
    class: String,
    thread_safe: bool,
}

/// The commands printed at the end.
struct Commands {
    greet: String,
    count: String,
    /// The pytest tests, run by the pool's own interpreter.
    test: String,
}

impl Template<'_> {
    fn commands(&self, root: &Path) -> Commands {
        // The running binary, so that the commands work as printed even when
        // it is not on PATH.
        let exe = std::env::current_exe()
            .map(|p| shell_quote(&p.to_string_lossy()))
            .unwrap_or_else(|_| "snakepit".into());
        let config = shell_quote(&root.join(CONFIG_FILE).to_string_lossy());
        Commands {
            greet: format!("{exe} exec --config {config} greet --args '{{\"name\": \"world\"}}'"),
            count: format!("{exe} exec --config {config} count --args '{{\"n\": 3}}'"),
            test: format!(
                "\"$({exe} --config {config} env python)\" -m pytest {}",
                shell_quote(&root.join("tests").to_string_lossy())
            ),
        }
    }

    fn init_py(&self) -> String {
        format!(
            r#""""The `{name}` snakepit adapter package."""

from .adapter import {class}

__all__ = ["{class}"]
"#,
            name = self.name,
            class = self.class
        )
    }

    fn adapter_py(&self) -> String {
        let Template { name, class, .. } = self;
        if self.thread_safe {
            format!(
                r#""""`{class}`: the tools of the `{name}` package, safe to run on many threads.

In the thread profile (see snakepit.toml) the worker creates one instance at
start-up, calls `initialize()` once, serves every request on that instance
from several threads at once, and calls `cleanup()` once when it exits. State
on `self` is therefore shared by all requests: read-only state needs no lock,
and shared mutable state (here the greeting counter) changes only under
`self.acquire_lock()`.
"""

from __future__ import annotations

from collections.abc import Iterator

from snakepit_bridge import StreamChunk
from snakepit_bridge.base_adapter_threaded import ThreadSafeAdapter, thread_safe_method, tool

__all__ = ["{class}"]


class {class}(ThreadSafeAdapter):
    """Greets people and counts; safe to run on many threads at once."""

    # Tells the worker that the thread profile may run this adapter.
    __thread_safe__ = True

    def __init__(self) -> None:
        super().__init__()
        self.greeting = ""
        # Greetings made by this instance, from every thread; changed under the lock.
        self.greeted = 0

    def initialize(self) -> None:
        """Runs once, before the first request: load models, open clients here."""
        self.greeting = "Hello"

    def cleanup(self) -> None:
        """Runs once, when the worker exits: release what initialize() took."""
        self.greeting = ""

    @thread_safe_method
    @tool(description="Greet someone by name.")
    def greet(self, name: str = "world") -> str:
        with self.acquire_lock():
            self.greeted += 1
        return f"{{self.greeting}}, {{name}}!"

    @thread_safe_method
    @tool(description="Count from 1 to n, one chunk per number.", supports_streaming=True)
    def count(self, n: int = 3) -> Iterator[StreamChunk]:
        for i in range(1, n + 1):
            yield StreamChunk({{"count": i, "of": n}}, is_final=(i == n))
"#
            )
        } else {
            format!(
                r#""""`{class}`: the tools of the `{name}` package.

The worker creates a new instance for every request and calls `initialize()`
before the tool and `cleanup()` after it, so state that must outlive one call
lives at module level (one copy per worker process).
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from snakepit_bridge import BaseAdapter, StreamChunk, tool

__all__ = ["{class}"]


@functools.cache
def _shared_resources() -> dict[str, Any]:
    """Loads what every request needs, once per worker process.

    This stands in for loading a model or opening a client.
    """
    return {{"greeting": "Hello"}}


class {class}(BaseAdapter):
    """Greets people and counts."""

    def initialize(self) -> None:
        """Runs before every tool call."""
        self.resources = _shared_resources()

    def cleanup(self) -> None:
        """Runs after every tool call, even one that raised."""
        self.resources = None

    @tool(description="Greet someone by name.")
    def greet(self, name: str = "world") -> str:
        return f"{{self.resources['greeting']}}, {{name}}!"

    @tool(description="Count from 1 to n, one chunk per number.", supports_streaming=True)
    def count(self, n: int = 3) -> Iterator[StreamChunk]:
        for i in range(1, n + 1):
            yield StreamChunk({{"count": i, "of": n}}, is_final=(i == n))
"#
            )
        }
    }

    fn test_py(&self) -> String {
        let Template { name, class, .. } = self;
        let fixture_doc = if self.thread_safe {
            "The instance, set up as the thread profile sets up its one shared instance."
        } else {
            "An instance, set up as the worker sets one up for each request."
        };
        let mut out = format!(
            r#""""Tests of `{class}`: they call its methods directly, no worker needed."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# Makes `{name}` importable without installing it: its parent directory goes first on sys.path.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from {name}.adapter import {class}  # noqa: E402


@pytest.fixture
def adapter():
    """{fixture_doc}"""
    instance = {class}()
    instance.initialize()
    yield instance
    instance.cleanup()


def test_greet_greets_by_name(adapter):
    assert adapter.greet("world") == "Hello, world!"
    assert adapter.greet(name="Ada") == "Hello, Ada!"


def test_count_streams_one_chunk_per_number_and_the_last_is_final(adapter):
    chunks = list(adapter.count(3))
    assert [c.data for c in chunks] == [{{"count": i, "of": 3}} for i in (1, 2, 3)]
    assert [c.is_final for c in chunks] == [False, False, True]
    assert list(adapter.count(0)) == []


def test_the_tools_are_declared():
    tools = {{t.name: t for t in {class}.get_tools()}}
    assert set(tools) == {{"greet", "count"}}
    assert not tools["greet"].supports_streaming
    assert tools["count"].supports_streaming
"#
        );
        if self.thread_safe {
            write!(
                out,
                r#"

def test_greetings_from_many_threads_are_all_counted(adapter):
    from concurrent.futures import ThreadPoolExecutor

    def greet_many(i: int) -> None:
        for _ in range(200):
            assert adapter.greet(f"thread {{i}}") == f"Hello, thread {{i}}!"

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(greet_many, range(8)))
    assert adapter.greeted == 8 * 200
    assert adapter.get_stats_dict()["requests_by_method"]["greet"] == 8 * 200
"#
            )
            .expect("writing to a String cannot fail");
        }
        out
    }

    fn config_toml(&self) -> String {
        let Template { name, class, .. } = self;
        let profile = if self.thread_safe {
            "# The thread profile: one process runs up to 4 requests at once, on threads.\n\
             size = 1\n\
             profile = \"thread\"\n\
             threads_per_worker = 4\n"
        } else {
            "# The process profile: each worker process runs one request at a time.\n\
             size = 2\n\
             profile = \"process\"\n"
        };
        format!(
            r#"# snakepit configuration for the `{name}` adapter, written by `snakepit new adapter`.
#   snakepit exec --config snakepit.toml greet --args '{{"name": "world"}}'
# More pool options (timeouts, restarts, recycling) are listed in snakepit's `src/default.toml`.
# Relative paths are relative to this file's directory.

[[pools]]
name = "{name}"
adapter = "{name}.adapter.{class}"
# The directory holding the `{name}` package, so that workers can import it.
python_path = [".."]
# What the pool's Python environment installs besides the bridge: pytest runs tests/.
requirements = ["pytest"]
{profile}"#
        )
    }

    fn readme(&self, commands: &Commands) -> String {
        let Template { name, class, .. } = self;
        let kind = if self.thread_safe {
            "a thread-safe adapter (`ThreadSafeAdapter`): one worker process serves up to 4 \
             requests at once, on threads sharing one adapter instance"
        } else {
            "an adapter run by two worker processes, each serving one request at a time \
             on a new adapter instance"
        };
        format!(
            r#"# {name}

A snakepit adapter package: `{class}` in `adapter.py`, {kind}.

- `greet(name)` returns a greeting.
- `count(n=3)` streams `n` chunks, one per number.

## Run a tool

```sh
{greet}
{count}
```

`snakepit.toml` holds the pool: edit its size, profile, timeouts and
`requirements` (the packages its Python environment installs) there. Its
paths are relative to its own directory, so the package can move.

## Test

```sh
{test}
```

The tests call the adapter's methods directly, with the pool's own Python
(`snakepit env python` prints it), which has `pytest` and `snakepit_bridge`.
"#,
            greet = commands.greet,
            count = commands.count,
            test = commands.test
        )
    }
}

fn write_package(root: &Path, template: &Template) -> anyhow::Result<()> {
    let commands = template.commands(root);
    let files = [
        template.init_py(),
        template.adapter_py(),
        template.test_py(),
        template.config_toml(),
        template.readme(&commands),
    ];
    let files = FILES.into_iter().zip(files);
    for (rel, text) in files {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    // The configuration must load as written.
    snakepit::config::Config::load(&root.join(CONFIG_FILE))?;
    Ok(())
}

/// `s` as one word for a POSIX shell.
fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@%".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_names_are_camel_case_with_one_adapter_suffix() {
        assert_eq!(class_name("text_tools"), "TextToolsAdapter");
        assert_eq!(class_name("demo_adapter"), "DemoAdapter");
        assert_eq!(class_name("x"), "XAdapter");
        assert_eq!(class_name("_1x"), "_1xAdapter");
    }

    #[test]
    fn names_must_be_importable() {
        assert!(check_name("text_tools").is_ok());
        assert!(check_name("_private2").is_ok());
        for bad in [
            "my-adapter",
            "1abc",
            "",
            "a.b",
            "class",
            "snakepit_bridge",
            "é",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?} was accepted");
        }
        let err = check_name("my-adapter").unwrap_err().to_string();
        assert!(err.contains("my_adapter"), "{err}");
    }

    #[test]
    fn shell_quoting_leaves_plain_paths_alone() {
        assert_eq!(
            shell_quote("/tmp/a_b/snakepit.toml"),
            "/tmp/a_b/snakepit.toml"
        );
        assert_eq!(shell_quote("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
