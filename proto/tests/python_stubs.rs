//! The Python stubs are generated from the same .proto files as the Rust
//! code: the bridge's (`python/snakepit_bridge/_proto/`, the worker protocol)
//! and the client's (`python/client/snakepit_client/_proto/`, the worker
//! protocol's values and the gRPC service). This test regenerates them with
//! the vendored protoc and fails when the checked-in copies differ.
//!
//! protoc's Python output imports a dependency by its absolute proto path
//! (`from snakepit.v1 import snakepit_pb2`); the packages hold the stubs as
//! siblings, so generation makes that one import relative (`from . import`).
//!
//! To refresh them after changing a .proto:
//! `SNAKEPIT_BLESS=1 cargo test -p snakepit-proto --test python_stubs`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// One package's stubs: the .proto files it needs, and where they live.
struct Target {
    protos: &'static [&'static str],
    dir: &'static str,
}

const TARGETS: [Target; 2] = [
    Target {
        protos: &["snakepit"],
        dir: "../python/snakepit_bridge/_proto",
    },
    Target {
        protos: &["snakepit", "service"],
        dir: "../python/client/snakepit_client/_proto",
    },
];

fn proto_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs protoc on `protos`; returns the generated files by name, with the
/// imports between them made relative.
fn generate(out: &Path, protos: &[&str]) -> Vec<(String, String)> {
    let mut cmd = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap());
    cmd.arg("-I")
        .arg(proto_root())
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--pyi_out={}", out.display()));
    for proto in protos {
        cmd.arg(proto_root().join(format!("snakepit/v1/{proto}.proto")));
    }
    let status = cmd.status().expect("run vendored protoc");
    assert!(status.success(), "protoc failed: {status}");
    let mut files = Vec::new();
    for proto in protos {
        for ext in ["py", "pyi"] {
            let name = format!("{proto}_pb2.{ext}");
            let text = std::fs::read_to_string(out.join("snakepit/v1").join(&name)).unwrap();
            files.push((
                name,
                text.replace("from snakepit.v1 import ", "from . import "),
            ));
        }
    }
    files
}

#[test]
fn python_stubs_match_the_protos() {
    let bless = std::env::var_os("SNAKEPIT_BLESS").is_some();
    let mut drifted = Vec::new();
    for (i, target) in TARGETS.iter().enumerate() {
        let out = std::env::temp_dir().join(format!("snakepit-stubs-{}-{i}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        let checked_in: PathBuf = proto_root().join(target.dir);
        for (name, fresh) in generate(&out, target.protos) {
            let path = checked_in.join(&name);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if fresh != current {
                if bless {
                    std::fs::create_dir_all(&checked_in).unwrap();
                    std::fs::write(&path, &fresh).unwrap();
                } else {
                    drifted.push(path.display().to_string());
                }
            }
        }
        std::fs::remove_dir_all(&out).ok();
    }
    assert!(
        drifted.is_empty(),
        "Python stubs {drifted:?} differ from proto/snakepit/v1/*.proto; \
         regenerate with SNAKEPIT_BLESS=1 cargo test -p snakepit-proto --test python_stubs"
    );
}
