//! Compiles `proto/*.proto` with a pure-Rust protobuf compiler, so a fresh machine
//! needs no system `protoc`. The descriptor set is kept too: `put_proto` records the
//! message types it stores the way the Go library does.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/anchor.proto",
        "proto/schema.proto",
        "proto/split.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut buf = Vec::new();
    prost::Message::encode(&fds, &mut buf)?;
    std::fs::write(out.join("descriptors.bin"), &buf)?;
    let mut config = prost_build::Config::new();
    config.bytes(["."]);
    config.compile_fds(fds)?;
    Ok(())
}
