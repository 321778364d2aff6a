//! Integration tests of the atomic writer, one binary with one module per area.
//!
//! This is not where unit tests of pure helpers live: those are inline in `src/`.

mod child;
mod crash;
mod faults;
mod layout;
mod lock;
mod paths;
mod readers;
mod strata_fixes;
mod util;
mod writes;
