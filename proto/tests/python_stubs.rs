//! The Python stubs in `python/snakepit_bridge/_proto/` are generated from the
//! same .proto as the Rust code. This test regenerates them with the vendored
//! protoc and fails when the checked-in copies differ.
//!
//! To refresh them after changing the .proto:
//! `SNAKEPIT_BLESS=1 cargo test -p snakepit-proto --test python_stubs`.

use std::path::{Path, PathBuf};
use std::process::Command;

const STUBS: [&str; 2] = ["snakepit_pb2.py", "snakepit_pb2.pyi"];

fn generate(out: &Path) {
    let proto_root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(protoc_bin_vendored::protoc_bin_path().unwrap())
        .arg("-I")
        .arg(proto_root)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--pyi_out={}", out.display()))
        .arg(proto_root.join("snakepit/v1/snakepit.proto"))
        .status()
        .expect("run vendored protoc");
    assert!(status.success(), "protoc failed: {status}");
}

#[test]
fn python_stubs_match_the_proto() {
    let out = std::env::temp_dir().join(format!("snakepit-stubs-{}", std::process::id()));
    std::fs::create_dir_all(&out).unwrap();
    generate(&out);
    let generated = out.join("snakepit/v1");
    let checked_in: PathBuf =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../python/snakepit_bridge/_proto");
    let bless = std::env::var_os("SNAKEPIT_BLESS").is_some();
    let mut drifted = Vec::new();
    for name in STUBS {
        let fresh = std::fs::read_to_string(generated.join(name)).unwrap();
        let target = checked_in.join(name);
        let current = std::fs::read_to_string(&target).unwrap_or_default();
        if fresh != current {
            if bless {
                std::fs::write(&target, &fresh).unwrap();
            } else {
                drifted.push(name);
            }
        }
    }
    std::fs::remove_dir_all(&out).ok();
    assert!(
        drifted.is_empty(),
        "Python stubs {drifted:?} differ from proto/snakepit/v1/snakepit.proto; \
         regenerate with SNAKEPIT_BLESS=1 cargo test -p snakepit-proto --test python_stubs"
    );
}
