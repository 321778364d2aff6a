//! Tests of strata-volume: the blob store, block blobs, round trips of random trees over chains of
//! snapshots, determinism, corrupt and malicious blobs, and a larger tree, all on the real
//! filesystem in temporary directories.

mod block;
mod changes;
mod corrupt;
mod determinism;
mod escape;
mod large;
mod roundtrip;
mod scan;
mod store;
mod util;
