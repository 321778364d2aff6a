//! Tests of strata-hub: the model, the sync rules on every engine, push and pull, their
//! planners on small histories, and the HTTP server.

mod incremental;
mod model;
mod plan;
mod server;
mod sync;
mod util;
mod workspace;
