//! Integration tests of the tlog.

mod client;
mod harness;
mod player;
mod redis;
mod robustness;
mod server;
mod storage;
