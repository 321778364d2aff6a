//! `strata ckpt` end to end: `strata ckpt serve --conf` in front of a real Swift, driven by
//! `strata ckpt put|get|delete`.

use std::process::Stdio;
use std::time::Duration;

use anyhow::ensure;

use crate::util::Strata;

#[test]
fn put_get_delete_through_the_binary() -> anyhow::Result<()> {
    let swift = strata_testkit::shared_swift();
    let auth = swift.auth()?;
    let container = format!("cli-{}", std::process::id());
    swift.put_container(&auth, &container)?;
    let url = swift.put_object(&auth, &container, "checkpoint", b"from the object store")?;

    let strata = Strata::new()?;
    let port = strata_testkit::free_port()?;
    let conf = strata.dir.path().join("ickpt.conf");
    std::fs::write(
        &conf,
        format!(
            "[ICKPT]\nIPAddr: 127.0.0.1\nPort: {port}\nTransactionTimeout: 10s\nSwiftRetryLimit: 1\n\
             StorageHosts: {}\n",
            swift.url()
        ),
    )?;
    let mut server = strata
        .command()
        .args(["ckpt", "serve", "--conf", &conf.to_string_lossy()])
        .stderr(Stdio::null())
        .spawn()?;
    let server_url = format!("http://127.0.0.1:{port}");
    let up = strata_testkit::wait_until("ckpt serve", Duration::from_secs(10), || {
        Ok(std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
    });
    let result = up.and_then(|()| {
        let target = ["--server", &server_url, "--storage-url", &url, "--token", &auth.token];
        let ckpt = |args: &[&str]| strata.ok(&[&["ckpt"][..], args, &target[..]].concat());
        let first = ckpt(&["get"])?;
        ensure!(first.trim_end() == "from the object store", "GET before any commit: {first:?}");
        ckpt(&["put", "0000000000000001 0000000000000002 0000000000000003 0000000000000004"])?;
        let got = ckpt(&["get"])?;
        ensure!(got.starts_with("0000000000000001"), "after put: {got:?}");
        ckpt(&["delete"])?;
        let after = ckpt(&["get"])?;
        ensure!(after.trim_end() == "from the object store", "after delete: {after:?}");
        let bad = strata.run(&[
            "ckpt",
            "get",
            "--server",
            &server_url,
            "--storage-url",
            &url,
            "--token",
            "wrong",
        ])?;
        ensure!(
            bad.status.code() == Some(9),
            "a wrong token: exit {:?}, not 9 (unauthenticated): {}",
            bad.status.code(),
            String::from_utf8_lossy(&bad.stderr)
        );
        Ok(())
    });
    server.kill()?;
    server.wait()?;
    result
}
