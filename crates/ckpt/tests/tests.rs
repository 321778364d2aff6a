//! Integration tests of the checkpoint service against a real Swift (and etcd), which the
//! harness installs and starts on loopback.

mod concurrency;
mod etcd;
mod http;
mod outage;
mod protocol;
mod storage_hosts;
mod tls;
mod util;
