//! How `strata` reports failures every command shares: an address in use, a missing file.

use anyhow::ensure;

use crate::util::Strata;

// Issue 16: "address in use" exited 7 for `hub serve` but 1 for `tlog serve`.
#[test]
fn every_server_exits_unavailable_naming_the_taken_address_and_its_flag() -> anyhow::Result<()> {
    let s = Strata::new()?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?.to_string();
    let servers: [&[&str]; 5] = [
        &["tlog", "serve", "--no-encryption", "--listen", &addr],
        &["nbd", "serve", "--tlog-servers", "127.0.0.1:1", "--listen", &addr],
        &["hub", "serve", "--listen", &addr],
        &["ckpt", "serve", "--listen", &addr],
        &["serve", "--hub-listen", &addr],
    ];
    for args in servers {
        let out = s.run(args)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        let flag = if args[0] == "serve" { "--hub-listen" } else { "--listen" };
        ensure!(out.status.code() == Some(7), "{args:?} exited {:?}: {stderr}", out.status);
        ensure!(
            stderr.contains(&addr) && stderr.contains(flag) && stderr.contains("in use"),
            "{args:?}: {stderr}"
        );
    }
    let socket = s.dir.path().join("taken.sock");
    let _taken = std::os::unix::net::UnixListener::bind(&socket)?;
    let root = s.dir.path().join("root");
    let out = s.run(&[
        "snapshotter",
        "--socket",
        socket.to_str().unwrap(),
        "--root",
        root.to_str().unwrap(),
    ])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(7), "snapshotter exited {:?}: {stderr}", out.status);
    ensure!(stderr.contains("taken.sock") && stderr.contains("--socket"), "{stderr}");
    Ok(())
}

// Issue 16: causes printed twice ("No such file or directory (os error 2): No such file or
// directory (os error 2)").
#[test]
fn a_missing_file_is_named_with_its_os_error_once() -> anyhow::Result<()> {
    let s = Strata::new()?;
    let missing = s.dir.path().join("absent.toml");
    let out = s.run(&["--config", missing.to_str().unwrap(), "kv", "ls"])?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(2), "{:?}: {stderr}", out.status);
    ensure!(stderr.contains("absent.toml"), "{stderr}");
    ensure!(stderr.matches("No such file or directory").count() == 1, "{stderr}");
    Ok(())
}
