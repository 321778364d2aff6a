//! Real servers for strata's tests, started on free loopback ports.
//!
//! The harness never mocks a server and never skips a test because one is missing: when the
//! program is not installed it installs the Debian package (`apt-get install`), and if that
//! fails the test fails with a message saying what to install.
//!
//! # Brief overview
//!
//! - [`Etcd`]: a one-member etcd cluster in a temporary directory; [`shared_etcd`] starts one
//!   per test process and tests separate themselves by key prefix.
//! - [`ensure_program`]: installs a Debian package when its program is missing.
//! - [`free_port`]: a loopback port nobody listens on.
//! - [`scratch_dir`]: a server's temporary directory, swept once its process is gone (the
//!   shared servers live in statics, which are never dropped).
//! - [`make_certificates`]: a test CA and a server certificate for 127.0.0.1.
//! - [`memory_store`], [`redb_store`], [`etcd_store`]: a KV store per engine for suites that
//!   [`conformance!`] runs on each.
//!
//! Servers are children of an immortal spawner thread that sets `PR_SET_PDEATHSIG`, so they
//! die with the test process even when it is killed.

#![deny(missing_docs)]

mod containerd;
mod etcd;
mod process;
mod redis;
mod stores;
mod swift;
mod tls;

pub use crate::containerd::{CTR_NAMESPACE, Containerd};
pub use crate::etcd::{Etcd, shared_etcd};
pub use crate::process::{ServerProcess, ensure_program, free_port, scratch_dir, wait_until};
pub use crate::redis::RedisServers;
pub use crate::stores::{
    ShareServer, StoreFixture, etcd_config, etcd_store, etcd_suite_store, memory_store, redb_store,
    shared_store,
};
pub use crate::swift::{
    SWIFT_KEY, SWIFT_OTHER_USER, SWIFT_USER, Swift, SwiftAuth, SwiftResponse, shared_swift,
};
pub use crate::tls::make_certificates;
