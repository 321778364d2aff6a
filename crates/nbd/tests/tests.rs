//! Integration tests of strata-nbd: a real tlog server and the NBD server in-process, real
//! NBD clients (qemu-img, qemu-io, qemu-nbd, libnbd's nbdinfo and nbdcopy, fio's nbd engine,
//! a raw protocol client) against them.

mod client;
mod harness;
mod libnbd;
mod protocol;
mod qemu;
mod records;
