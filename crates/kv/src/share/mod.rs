//! Sharing a process's stores with other processes over a unix socket.
//!
//! redb lets one process open a file at a time. A server that holds its stores open
//! (`strata serve`) shares them with [`serve`]; a command in another process opens one
//! with [`Store::connect`](crate::Store::connect) and runs transactions on it as if it
//! were local, validated and applied by the server's own engine.

mod server;
pub(crate) mod wire;

pub use crate::share::server::{Shared, serve};
