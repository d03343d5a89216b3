//! Embeds the Python bridge package (`python/`) into the `snakepit` binary, so
//! that a binary on its own can bootstrap a working Python environment; and
//! the client package (`python/client/`), for `snakepit bench`'s Python side.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let python = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap()).join("python");
    embed(
        &python,
        &[
            "pyproject.toml",
            "requirements.txt",
            "requirements-test.txt",
            "README.md",
            "LICENSE",
        ],
        "snakepit_bridge",
        "BRIDGE_FILES",
        "bridge_files.rs",
    );
    // The client package, which `snakepit bench` installs for its Python
    // clients (and whose `_bench` module is the harness).
    embed(
        &python.join("client"),
        &["pyproject.toml", "README.md", "LICENSE"],
        "snakepit_client",
        "CLIENT_FILES",
        "client_files.rs",
    );
}

/// Writes `OUT_DIR/out_file`: a static `name` listing the files of the
/// package `package` under `root` and the top-level files `tops` that exist,
/// each with its path relative to `root`.
fn embed(root: &Path, tops: &[&str], package: &str, name: &str, out_file: &str) {
    let mut files = Vec::new();
    for top in tops {
        let path = root.join(top);
        if path.exists() {
            files.push(path);
        }
    }
    collect(&root.join(package), &mut files);
    files.sort();
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed={}", root.join(package).display());
    let mut out = format!(
        "/// Files of the `{package}` package, relative to its project directory.\npub static {name}: &[(&str, &[u8])] = &[\n"
    );
    for path in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        writeln!(
            out,
            "    ({rel:?}, include_bytes!({:?})),",
            path.display().to_string()
        )
        .unwrap();
    }
    out.push_str("];\n");
    let dest = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join(out_file);
    std::fs::write(dest, out).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    println!("cargo:rerun-if-changed={}", dir.display());
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().to_string();
        if name == "__pycache__" || name.ends_with(".pyc") || name.starts_with('.') {
            continue;
        }
        if path.is_dir() {
            collect(&path, files);
        } else {
            files.push(path);
        }
    }
}
