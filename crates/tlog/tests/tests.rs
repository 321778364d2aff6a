//! Integration tests of the tlog.

mod client;
mod conformance;
mod harness;
mod local;
mod player;
mod redis;
mod robustness;
mod server;
mod storage;
