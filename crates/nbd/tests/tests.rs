//! Integration tests of strata-nbd: a real tlog server and the NBD server in-process, real
//! NBD clients (qemu-img, qemu-io, qemu-nbd, a raw protocol client) against them.

mod harness;
mod protocol;
mod qemu;
mod records;
