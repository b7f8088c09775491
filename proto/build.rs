//! Compiles the .proto files with protox (pure Rust), so a fresh machine
//! needs no system protoc, and keeps the descriptor set for gRPC reflection.

use prost::Message;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/coloc/agent/v1/agent.proto",
        "proto/coloc/agent/v1/health.proto",
        "proto/coloc/controller/v1/controller.proto",
        "proto/coloc/controller/v1/health.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("coloc_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A health report is large next to the other messages of the
        // agent's stream; boxed, the enum stays small.
        .boxed(".coloc.agent.v1.AgentMessage.body.health")
        .compile_fds(fds)?;
    Ok(())
}
