//! Integration tests of the tlog.

mod client;
mod harness;
mod player;
mod server;
mod storage;
