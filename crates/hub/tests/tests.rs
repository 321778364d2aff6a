//! Tests of strata-hub: the model, the sync rules on every engine, push and pull, and the
//! HTTP server.

mod incremental;
mod model;
mod server;
mod sync;
mod util;
mod workspace;
