//! Generates the Rust side of the protocol from `snakepit/v1/*.proto` with the
//! protoc that ships inside `protoc-bin-vendored`: nothing to install.
//!
//! - `snakepit.proto`: the worker protocol (frames and the typed `Value`).
//! - `service.proto`: the gRPC API of `snakepit serve`; its tonic server and
//!   client are compiled only with the `grpc` feature, so that the crates
//!   below the API never link tonic.
//! - `agent.proto`: the node agents' `Attach` stream; its messages are
//!   plain (the runtime relays them), its service comes with `grpc` too.
//!
//! The encoded descriptors of both files are written next to the code, for
//! gRPC server reflection.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let protos = [
        "snakepit/v1/snakepit.proto",
        "snakepit/v1/service.proto",
        "snakepit/v1/agent.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_prost_build::configure()
        .bytes(".snakepit.v1.NdArray.data")
        .bytes(".snakepit.v1.Value.bytes")
        .bytes(".snakepit.v1.WorkerData.data")
        .server_mod_attribute("snakepit.v1", "#[cfg(feature = \"grpc\")]")
        .client_mod_attribute("snakepit.v1", "#[cfg(feature = \"grpc\")]")
        .file_descriptor_set_path(out.join("snakepit_descriptor.bin"))
        .compile_protos(&protos, &["."])?;
    Ok(())
}
