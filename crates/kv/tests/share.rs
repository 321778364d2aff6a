//! Sharing a store over a unix socket (`strata_kv::share`), beyond the conformance suite
//! that runs on a shared store: what a client that is wrong or hostile gets.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use anyhow::ensure;
use strata_kv::Read as _;
use strata_kv::{Category, Store};

/// Sends raw bytes and reads what the server answers until it closes.
fn exchange(socket: &std::path::Path, bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(bytes)?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(answer)
}

#[test]
fn a_file_the_server_does_not_share_is_refused_by_name() -> anyhow::Result<()> {
    let fixture = strata_testkit::shared_store()?;
    let socket = fixture.dir.path().join("share.sock");
    let other = fixture.dir.path().join("other.redb");
    let err = Store::connect(&socket, &other).err().ok_or_else(|| anyhow::anyhow!("opened"))?;
    let text = err.to_string();
    ensure!(text.contains("other.redb") && text.contains("not shared"), "{text}");
    ensure!(text.contains("kv.redb"), "the error names what is shared: {text}");
    ensure!(err.category() == Category::InvalidArgument, "{err:?}");
    Ok(())
}

#[test]
fn malformed_and_oversized_messages_get_an_error_and_a_close() -> anyhow::Result<()> {
    let fixture = strata_testkit::shared_store()?;
    let socket = fixture.dir.path().join("share.sock");
    // A frame of 3 bytes that are no message.
    let answer = exchange(&socket, &[0, 0, 0, 3, 0xff, 0xff, 0xff])?;
    ensure!(String::from_utf8_lossy(&answer).contains("malformed message"), "{answer:?}");
    // A frame announcing 1 GiB: refused before any of it is read.
    let answer = exchange(&socket, &[0x40, 0, 0, 0])?;
    ensure!(answer.is_empty(), "an oversized frame was answered: {answer:?}");
    // The server still serves well-formed clients.
    fixture.store.with_txn(|txn| {
        txn.put(b"after", b"fine");
        Ok::<_, strata_kv::Error>(())
    })?;
    ensure!(fixture.store.read()?.get(b"after")?.as_deref() == Some(&b"fine"[..]));
    Ok(())
}

#[test]
fn a_request_before_open_is_refused() -> anyhow::Result<()> {
    let fixture = strata_testkit::shared_store()?;
    let socket = fixture.dir.path().join("share.sock");
    // postcard: variant 1 (Snapshot) without an Open first. The error is answered and the
    // connection stays open for the next request.
    let mut stream = UnixStream::connect(&socket)?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    stream.write_all(&[0, 0, 0, 1, 1])?;
    let mut len = [0; 4];
    stream.read_exact(&mut len)?;
    let mut answer = vec![0; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut answer)?;
    ensure!(String::from_utf8_lossy(&answer).contains("open a store"), "{answer:?}");
    Ok(())
}
