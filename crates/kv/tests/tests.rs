//! Integration tests of the KV layer: the conformance suite every engine runs, and the
//! durability test that kills a committing process.

mod conformance;
mod durability;
mod etcd;
mod model;
mod share;
