//! Generates the Rust code of containerd's Snapshots gRPC API from `proto/` with protoc
//! (Debian `protobuf-compiler`). It is not the service: that is `src/grpc/`.
//!
//! The server is what strata offers; the client is generated too, for the tests and for
//! tools that talk to a running proxy snapshotter. The well-known types (`Empty`,
//! `FieldMask`, `Timestamp`) come from `prost-types`; their `.proto` files are vendored under
//! `proto/google/protobuf/` so protoc needs no `libprotobuf-dev`.

fn main() -> std::io::Result<()> {
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Labels are sorted maps in strata's model, so conversions are moves.
        .btree_map(".")
        .include_file("containerd.rs")
        .compile_protos(
            &[
                "proto/containerd/types/mount.proto",
                "proto/containerd/services/snapshots/v1/snapshots.proto",
            ],
            &["proto"],
        )
}
