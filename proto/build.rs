//! Generates the Rust side of the wire protocol from `snakepit/v1/*.proto`
//! with the protoc that ships inside `protoc-bin-vendored`: nothing to install.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    // SAFETY: build scripts are single-threaded; prost-build reads PROTOC.
    unsafe { std::env::set_var("PROTOC", protoc) };
    let proto = "snakepit/v1/snakepit.proto";
    println!("cargo:rerun-if-changed={proto}");
    prost_build::Config::new()
        .bytes([".snakepit.v1.NdArray.data", ".snakepit.v1.Value.bytes"])
        .compile_protos(&[proto], &["."])?;
    Ok(())
}
