//! Generates Rust code for the `.proto` files in `proto/` that containerd-shim-protos lacks.
//!
//! The pure-Rust parser keeps `protoc` out of the build; lite mode leaves out the reflection
//! tables, which the shim never uses and which would cost resident memory in every shim.

use protobuf_codegen::{Codegen, Customize};

fn main() {
    let proto_root = "../../proto";
    let inputs = ["../../proto/runtimeoptions/v1/runtimeoptions.proto"];
    for input in inputs {
        println!("cargo:rerun-if-changed={input}");
    }
    Codegen::new()
        .pure()
        .include(proto_root)
        .inputs(inputs)
        .customize(Customize::default().lite_runtime(true).gen_mod_rs(true))
        .cargo_out_dir("proto")
        .run_from_script();
}
