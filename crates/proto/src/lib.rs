//! The tlog's Cap'n Proto schema (`schema/tlog.capnp`) and its generated Rust code.
//!
//! The generated code is committed (`src/generated/`), so building strata needs no `capnp`
//! tool; a test regenerates it and fails when it is stale. Nobody edits it by hand.
//!
//! # Brief overview
//!
//! - [`tlog_capnp::handshake_request`], [`tlog_capnp::handshake_response`]: the handshake.
//! - [`tlog_capnp::tlog_block`], [`tlog_capnp::command`], [`tlog_capnp::tlog_response`]:
//!   the messages after it.
//! - [`tlog_capnp::tlog_aggregation`]: strata's stored aggregate.

#![allow(missing_docs, clippy::all, clippy::pedantic, reason = "generated code")]

#[allow(unused_qualifications, unreachable_pub, missing_debug_implementations, clippy::unwrap_used)]
pub mod tlog_capnp {
    include!("generated/tlog_capnp.rs");
}
