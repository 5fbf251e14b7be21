//! Compiles proto/runtime_v1.proto with protox (pure Rust) and generates the tonic client:
//! no protoc, no network, nothing beyond the Rust toolchain.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/runtime_v1.proto");
    let fds = protox::compile(["runtime_v1.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
