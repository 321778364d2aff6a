//! `strata hub`, `strata volumeset|volume|log|push|pull|sync` end to end: data directories
//! exchanging volume sets through one `strata hub serve` process.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, ensure};
use strata_testkit::{ServerProcess, free_port, wait_until};

use crate::util::Strata;

/// A hub server process on its own data directory.
struct HubServer {
    strata: Strata,
    port: u16,
    process: Option<ServerProcess>,
    /// The directory of `server.pem` and `server.key` when the hub serves TLS.
    tls: Option<PathBuf>,
}

impl HubServer {
    fn start() -> anyhow::Result<HubServer> {
        HubServer::start_with(None)
    }

    /// A hub serving https with the certificate and key in `certs`.
    fn start_with(tls: Option<PathBuf>) -> anyhow::Result<HubServer> {
        let mut hub = HubServer { strata: Strata::new()?, port: free_port()?, process: None, tls };
        hub.restart()?;
        Ok(hub)
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        let mut command = self.strata.command();
        command.args(["hub", "serve", "--listen", &format!("127.0.0.1:{}", self.port)]);
        if let Some(certs) = &self.tls {
            command.arg("--tls-cert").arg(certs.join("server.pem"));
            command.arg("--tls-key").arg(certs.join("server.key"));
        }
        let log = self.strata.dir.path().join("hub-serve.log");
        self.process = Some(ServerProcess::spawn("strata hub serve", command, &log)?);
        let port = self.port;
        wait_until("strata hub serve", Duration::from_secs(20), || {
            Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
        })
    }

    fn kill(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.kill();
        }
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// A token made while the server runs (it re-reads the tokens file).
    fn token(&self, user: &str) -> anyhow::Result<String> {
        Ok(self.strata.ok(&["hub", "token", "create", user])?.trim().to_string())
    }

    fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(u16, serde_json::Value)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: hub\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        let status = answer.split(' ').nth(1).unwrap_or("0").parse()?;
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok((status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null)))
    }
}

fn remote<'a>(args: &[&'a str], hub: &'a str, token: &'a str) -> Vec<&'a str> {
    let mut all = args.to_vec();
    all.extend(["--remote", hub, "--token", token]);
    all
}

/// Every entry under `dir`: files with their bytes, directories, symlinks with targets.
fn tree(dir: &Path) -> anyhow::Result<BTreeMap<String, String>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) -> anyhow::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let path = entry?.path();
            let rel = path.strip_prefix(root)?.to_string_lossy().into_owned();
            let meta = std::fs::symlink_metadata(&path)?;
            if meta.file_type().is_symlink() {
                out.insert(rel, format!("link {}", std::fs::read_link(&path)?.display()));
            } else if meta.is_dir() {
                out.insert(rel, "dir".into());
                walk(root, &path, out)?;
            } else {
                let bytes = std::fs::read(&path)?;
                out.insert(rel, format!("file {} {}", bytes.len(), blake3::hash(&bytes)));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}

fn json(text: &str) -> anyhow::Result<serde_json::Value> {
    serde_json::from_str(text).with_context(|| format!("not JSON: {text}"))
}

fn create_volume(
    s: &Strata,
    volset: &str,
    name: &str,
    from: Option<&str>,
) -> anyhow::Result<PathBuf> {
    let mut args = vec!["volume", "create", volset, "--name", name, "--json"];
    if let Some(from) = from {
        args.extend(["--from", from]);
    }
    let made = json(&s.ok(&args)?)?;
    ensure!(made["id"].is_string() && made["name"] == name, "{made}");
    Ok(PathBuf::from(made["path"].as_str().unwrap_or_default()))
}

fn snapshot_description(s: &Strata, volset: &str, name: &str) -> anyhow::Result<String> {
    let all = json(&s.ok(&["volume", "snapshots", volset, "--json"])?)?;
    let found = all.as_array().into_iter().flatten().find(|x| x["name"] == name);
    Ok(found.and_then(|x| x["description"].as_str()).unwrap_or("<none>").to_string())
}

#[test]
fn two_stores_change_the_same_snapshot_and_the_hub_wins() -> anyhow::Result<()> {
    let hub = HubServer::start()?;
    let token = hub.token("alice")?;
    let url = hub.url();
    let a = Strata::new()?;
    let made = json(&a.ok(&["volumeset", "create", "data", "--json"])?)?;
    ensure!(made["name"] == "data" && made["id"].is_string(), "{made}");
    let va = create_volume(&a, "data", "va", None)?;
    std::fs::write(va.join("hello.txt"), "hello")?;
    a.ok(&["volume", "snapshot", "va", "--name", "s1"])?;
    let pushed = a.ok(&remote(&["push", "data"], &url, &token))?;
    ensure!(pushed.contains("pushed 1 snapshots"), "{pushed}");

    let b = Strata::new()?;
    let pulled = b.ok(&remote(&["pull", "data"], &url, &token))?;
    ensure!(pulled.contains("pulled 1 snapshots"), "{pulled}");
    a.ok(&["volume", "edit", "data", "s1", "--description", "from a"])?;
    b.ok(&["volume", "edit", "data", "s1", "--description", "from b"])?;
    let first = a.ok(&remote(&["sync", "data"], &url, &token))?;
    ensure!(!first.contains("conflict"), "{first}");
    let second = b.ok(&remote(&["sync", "data"], &url, &token))?;
    ensure!(second.contains("conflict on snapshot"), "{second}");
    for column in ["initial", "current", "target", "\"from a\"", "\"from b\""] {
        ensure!(
            second.contains(column),
            "{column} missing from the side-by-side report:\n{second}"
        );
    }
    ensure!(snapshot_description(&b, "data", "s1")? == "from a", "b ends with the hub's value");
    ensure!(snapshot_description(&a, "data", "s1")? == "from a");
    // Nothing left to reconcile.
    let third = b.ok(&remote(&["sync", "data", "--json"], &url, &token))?;
    ensure!(json(&third)?["conflicts"].as_array().is_some_and(Vec::is_empty), "{third}");
    Ok(())
}

#[test]
fn a_pulled_snapshot_makes_a_byte_identical_volume() -> anyhow::Result<()> {
    let hub = HubServer::start()?;
    let token = hub.token("alice")?;
    let url = hub.url();
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "photos"])?;
    let va = create_volume(&a, "photos", "va", None)?;
    std::fs::write(va.join("a.txt"), "one")?;
    std::fs::write(va.join("b.txt"), "two")?;
    std::fs::create_dir_all(va.join("dir/sub"))?;
    std::fs::write(
        va.join("dir/c.bin"),
        (0..200_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )?;
    std::os::unix::fs::symlink("a.txt", va.join("link"))?;
    a.ok(&["volume", "snapshot", "va", "--name", "s1"])?;
    let at_s1 = tree(&va)?;
    std::fs::remove_file(va.join("b.txt"))?;
    std::fs::remove_dir_all(va.join("dir"))?;
    std::fs::write(va.join("a.txt"), "one, changed")?;
    std::fs::write(va.join("d.txt"), "new")?;
    a.ok(&["volume", "snapshot", "va", "--name", "s2"])?;
    let at_s2 = tree(&va)?;
    // A fork from s1 on its own branch.
    let vb = create_volume(&a, "photos", "vb", Some("s1"))?;
    ensure!(tree(&vb)? == at_s1, "a local volume from s1 matches");
    std::fs::write(vb.join("e.txt"), "dev")?;
    a.ok(&["volume", "snapshot", "vb", "--name", "s3", "--branch", "dev"])?;
    a.ok(&remote(&["push", "photos"], &url, &token))?;

    let c = Strata::new()?;
    let pulled = c.ok(&remote(&["pull", "photos"], &url, &token))?;
    ensure!(pulled.contains("pulled 3 snapshots"), "{pulled}");
    let v2 = create_volume(&c, "photos", "copy2", Some("s2"))?;
    ensure!(tree(&v2)? == at_s2, "s2 on a fresh machine: {:?} vs {:?}", tree(&v2)?, at_s2);
    ensure!(!v2.join("b.txt").exists() && !v2.join("dir").exists(), "deletions carried over");
    let v1 = create_volume(&c, "photos", "copy1", Some("s1"))?;
    ensure!(tree(&v1)? == at_s1);

    let log = c.ok(&["log", "photos"])?;
    ensure!(log.contains("(main)") && log.contains("(dev)") && log.contains("|/"), "{log}");
    let logged = json(&c.ok(&["log", "photos", "--json"])?)?;
    ensure!(logged["snapshots"].as_array().map(Vec::len) == Some(3), "{logged}");
    let sets = json(&c.ok(&["volumeset", "ls", "--json"])?)?;
    ensure!(sets[0]["name"] == "photos", "{sets}");
    let volumes = json(&c.ok(&["volume", "ls", "--json"])?)?;
    ensure!(volumes.as_array().map(Vec::len) == Some(2), "{volumes}");
    // Snapshotting the pulled volume extends nothing shared: s2 is main's tip, so it extends.
    std::fs::write(v2.join("f.txt"), "more")?;
    let s4 = json(&c.ok(&["volume", "snapshot", "copy2", "--name", "s4", "--json"])?)?;
    ensure!(s4["depth"] == 3, "{s4}");
    let pushed = c.ok(&remote(&["push", "photos", "--json"], &url, &token))?;
    ensure!(json(&pushed)?["snapshots_pushed"] == 1, "{pushed}");
    Ok(())
}

#[test]
fn an_interrupted_push_resumes_on_a_restarted_hub() -> anyhow::Result<()> {
    let mut hub = HubServer::start()?;
    let token = hub.token("alice")?;
    let url = hub.url();
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "big"])?;
    let va = create_volume(&a, "big", "va", None)?;
    std::fs::write(va.join("small.txt"), "small")?;
    a.ok(&["volume", "snapshot", "va", "--name", "s1"])?;
    let mut random = vec![0u8; 96 << 20];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut random)?;
    std::fs::write(va.join("large.bin"), &random)?;
    drop(random);
    a.ok(&["volume", "snapshot", "va", "--name", "s2"])?;
    let original = tree(&va)?;

    let push = a
        .command()
        .args(remote(&["push", "big"], &url, &token))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let blobs = hub.strata.dir.path().join("hub/blobs");
    // Kill the hub while the large blob is in flight: its temporary file is growing.
    wait_until("a blob upload in flight", Duration::from_secs(60), || {
        let growing = std::fs::read_dir(&blobs).into_iter().flatten().flatten().any(|e| {
            e.file_name().to_string_lossy().starts_with(".tmp-")
                && e.metadata().is_ok_and(|m| m.len() > (1 << 20))
        });
        Ok(growing)
    })?;
    hub.kill();
    let failed = push.wait_with_output()?;
    ensure!(!failed.status.success(), "the push must fail when the hub dies");

    hub.restart()?;
    let resumed = a.ok(&remote(&["push", "big", "--json"], &url, &token))?;
    let report = json(&resumed)?;
    ensure!(report["snapshots_pushed"] == 2, "{report}");
    let again = json(&a.ok(&remote(&["push", "big", "--json"], &url, &token))?)?;
    ensure!(again["snapshots_pushed"] == 0 && again["blobs_pushed"] == 0, "{again}");

    let c = Strata::new()?;
    c.ok(&remote(&["pull", "big"], &url, &token))?;
    let snaps = json(&c.ok(&["volume", "snapshots", "big", "--json"])?)?;
    let names: Vec<&str> =
        snaps.as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    ensure!(names == ["s1", "s2"], "no snapshot duplicated or lost: {names:?}");
    let copy = create_volume(&c, "big", "copy", Some("s2"))?;
    ensure!(tree(&copy)? == original, "the resumed push delivered every byte");
    Ok(())
}

#[test]
fn clear_errors_for_tokens_ids_names_and_json() -> anyhow::Result<()> {
    let hub = HubServer::start()?;
    let token = hub.token("alice")?;
    let url = hub.url();
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "set"])?;
    let va = create_volume(&a, "set", "va", None)?;
    std::fs::write(va.join("x"), "x")?;
    a.ok(&["volume", "snapshot", "va", "--name", "s1"])?;

    // A refused token is its own exit code, and the message says what to do.
    let wrong = a.run(&remote(&["push", "set"], &url, "not-a-token"))?;
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    ensure!(
        wrong.status.code() == Some(9)
            && stderr.contains("refused the token")
            && stderr.contains("unknown token")
            && stderr.contains("strata hub token create")
            && stderr.contains("--token"),
        "{stderr}"
    );
    let missing = a.run(&remote(&["pull", "no-such-set"], &url, &token))?;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    ensure!(missing.status.code() == Some(3) && stderr.contains("no volume set"), "{stderr}");
    let bad = a.run(&["volume", "rename-branch", "set", "main", "bad:name"])?;
    let stderr = String::from_utf8_lossy(&bad.stderr);
    ensure!(bad.status.code() == Some(2) && stderr.contains("invalid branch name"), "{stderr}");

    let t = Some(token.as_str());
    let (status, body) = hub.raw("GET", "/v1/whoami", Some("wrong"), "")?;
    ensure!(
        status == 401 && body["error"].as_str().is_some_and(|e| e.contains("unknown token")),
        "{status} {body}"
    );
    let (status, body) = hub.raw("GET", "/v1/snapshots/0000-0000", t, "")?;
    ensure!(
        status == 404 && body["error"].as_str().is_some_and(|e| e.contains("no snapshot")),
        "{status} {body}"
    );
    let (status, body) = hub.raw("POST", "/v1/blobs/missing", t, "{oops")?;
    ensure!(
        status == 400 && body["error"].as_str().is_some_and(|e| e.contains("malformed JSON")),
        "{status} {body}"
    );
    let (status, body) =
        hub.raw("POST", "/v1/volumesets/0000-0000/sync", t, r#"{"snapshots": 5}"#)?;
    ensure!(status == 422, "{status} {body}");
    let (status, _) = hub.raw("GET", "/openapi.yaml", None, "")?;
    ensure!(status == 200);

    // Another user sees nothing of alice's until she shares it.
    a.ok(&remote(&["push", "set"], &url, &token))?;
    let bob_token = hub.token("bob")?;
    let bob = Strata::new()?;
    let hidden = bob.run(&remote(&["pull", "set"], &url, &bob_token))?;
    ensure!(hidden.status.code() == Some(3), "{}", String::from_utf8_lossy(&hidden.stderr));
    let refused = bob.run(&remote(&["hub", "grant", "set", "bob"], &url, &bob_token))?;
    ensure!(!refused.status.success());
    a.ok(&remote(&["hub", "grant", "set", "bob"], &url, &token))?;
    let pulled = bob.ok(&remote(&["pull", "set"], &url, &bob_token))?;
    ensure!(pulled.contains("pulled 1 snapshots"), "{pulled}");
    Ok(())
}

/// The user and token id of every token `strata hub token ls --json` lists.
fn listed_tokens(hub: &HubServer) -> anyhow::Result<Vec<(String, String)>> {
    let listed = json(&hub.strata.ok(&["hub", "token", "ls", "--json"])?)?;
    let entries = listed.as_array().context("ls --json is an array")?;
    entries
        .iter()
        .map(|t| {
            ensure!(t["created_at"].as_u64().is_some_and(|c| c > 0), "{t}");
            ensure!(t.get("token").is_none() && t.get("hash").is_none(), "{t}");
            Ok((t["user"].as_str().unwrap_or("").into(), t["id"].as_str().unwrap_or("").into()))
        })
        .collect()
}

#[test]
fn tokens_are_listed_and_revoked_while_the_hub_runs() -> anyhow::Result<()> {
    let hub = HubServer::start()?;
    let made = json(&hub.strata.ok(&["hub", "token", "create", "alice", "--json"])?)?;
    let (first, first_id) =
        (made["token"].as_str().unwrap_or(""), made["id"].as_str().unwrap_or(""));
    let second = hub.token("alice")?;
    let bob = hub.token("bob")?;
    let listed = listed_tokens(&hub)?;
    ensure!(listed.len() == 3 && listed[0] == ("alice".into(), first_id.into()), "{listed:?}");
    let users: Vec<&str> = listed.iter().map(|(user, _)| user.as_str()).collect();
    ensure!(users == ["alice", "alice", "bob"], "{users:?}");
    let table = hub.strata.ok(&["hub", "token", "ls"])?;
    ensure!(table.starts_with("ID") && table.contains("CREATED") && table.contains(first_id));
    for secret in [first, second.as_str(), bob.as_str()] {
        ensure!(!table.contains(secret), "ls shows a token: {table}");
    }
    for token in [first, second.as_str(), bob.as_str()] {
        ensure!(hub.raw("GET", "/v1/whoami", Some(token), "")?.0 == 200);
    }

    // Revoked by id: the running server refuses it at once; the other token still works.
    let revoked = hub.strata.ok(&["hub", "token", "revoke", first_id])?;
    ensure!(revoked.contains(first_id) && revoked.contains("alice"), "{revoked}");
    let (status, body) = hub.raw("GET", "/v1/whoami", Some(first), "")?;
    ensure!(status == 401 && body["category"] == "unauthenticated", "{status} {body}");
    ensure!(hub.raw("GET", "/v1/whoami", Some(&second), "")?.0 == 200);
    // Every token of a user.
    hub.strata.ok(&["hub", "token", "revoke", "--user", "bob"])?;
    ensure!(hub.raw("GET", "/v1/whoami", Some(&bob), "")?.0 == 401);
    ensure!(listed_tokens(&hub)?.iter().map(|(u, _)| u.as_str()).collect::<Vec<_>>() == ["alice"]);
    let again = hub.strata.run(&["hub", "token", "revoke", first_id])?;
    let stderr = String::from_utf8_lossy(&again.stderr);
    ensure!(again.status.code() == Some(3) && stderr.contains("no token with id"), "{stderr}");
    let neither = hub.strata.run(&["hub", "token", "revoke"])?;
    ensure!(neither.status.code() == Some(2));
    Ok(())
}

#[test]
fn push_and_pull_over_https_trusting_a_ca_file() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let ca = certs.path().join("ca.pem");
    let ca = ca.to_str().context("utf-8 path")?;
    let hub = HubServer::start_with(Some(certs.path().to_path_buf()))?;
    let token = hub.token("alice")?;
    let url = hub.url();
    ensure!(url.starts_with("https://"));
    let a = Strata::new()?;
    a.ok(&["volumeset", "create", "set"])?;
    let va = create_volume(&a, "set", "va", None)?;
    std::fs::write(va.join("x"), "over tls")?;
    a.ok(&["volume", "snapshot", "va", "--name", "s1"])?;

    // Without the CA the certificate is not trusted, and the message says so.
    let untrusting = a.run(&remote(&["push", "set"], &url, &token))?;
    let stderr = String::from_utf8_lossy(&untrusting.stderr);
    ensure!(
        untrusting.status.code() == Some(7)
            && stderr.contains("certificate")
            && stderr.contains("--ca-file"),
        "{stderr}"
    );
    // A plain-http client is told the hub speaks https.
    let plain_url = url.replacen("https", "http", 1);
    let plain = a.run(&remote(&["push", "set"], &plain_url, &token))?;
    let stderr = String::from_utf8_lossy(&plain.stderr);
    ensure!(!plain.status.success() && stderr.contains("https only"), "{stderr}");

    let pushed = a.ok(&[remote(&["push", "set"], &url, &token), vec!["--ca-file", ca]].concat())?;
    ensure!(pushed.contains("pushed 1 snapshots"), "{pushed}");
    // hub.ca_file in the configuration does what --ca-file does.
    let b = Strata::new()?;
    let config = b.dir.path().join("strata.toml");
    std::fs::write(&config, format!("[hub]\nca_file = {ca:?}\n"))?;
    let config = config.to_str().context("utf-8 path")?;
    let pulled =
        b.ok(&[&["--config", config][..], &remote(&["pull", "set"], &url, &token)].concat())?;
    ensure!(pulled.contains("pulled 1 snapshots"), "{pulled}");
    let vb = create_volume(&b, "set", "vb", Some("s1"))?;
    ensure!(std::fs::read_to_string(vb.join("x"))? == "over tls");
    Ok(())
}

#[test]
fn hub_serve_stops_cleanly_on_sigterm() -> anyhow::Result<()> {
    let strata = Strata::new()?;
    let port = free_port()?;
    let mut child = strata
        .command()
        .args(["hub", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let ready = wait_until("strata hub serve", Duration::from_secs(20), || {
        Ok(TcpStream::connect(("127.0.0.1", port)).is_ok())
    });
    let pid = i32::try_from(child.id())?;
    let signalled = send_signal(pid, libc::SIGTERM);
    let mut status = None;
    for _ in 0..750 {
        if let Some(s) = child.try_wait()? {
            status = Some(s);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    ready?;
    signalled?;
    let status =
        status.ok_or_else(|| anyhow::anyhow!("strata hub serve did not stop on SIGTERM"))?;
    ensure!(status.success(), "strata hub serve exited with {status}");
    Ok(())
}

/// Sends `signal` to `pid` with the `kill` program.
fn send_signal(pid: i32, signal: i32) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()?;
    ensure!(status.success(), "kill -{signal} {pid} failed");
    Ok(())
}

#[test]
fn volume_commands_run_side_by_side_on_one_data_directory() -> anyhow::Result<()> {
    let s = Strata::new()?;
    // Each command holds the local store's redb file while it runs; the others wait.
    let children = (0..6)
        .map(|i| {
            s.command()
                .args(["volumeset", "create", &format!("set{i}")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<Result<Vec<_>, _>>()?;
    for child in children {
        let out = child.wait_with_output()?;
        ensure!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = json(&s.ok(&["volumeset", "ls", "--json"])?)?;
    ensure!(listed.as_array().is_some_and(|sets| sets.len() == 6), "{listed}");
    Ok(())
}

// Issue 16: an unchanged volume recorded an empty snapshot; `volume rm` and
// `volumeset rm` were missing.
#[test]
fn unchanged_volumes_record_nothing_and_volumes_and_sets_are_removed() -> anyhow::Result<()> {
    let s = Strata::new()?;
    s.ok(&["volumeset", "create", "web"])?;
    let path = create_volume(&s, "web", "v", None)?;
    std::fs::write(path.join("index.html"), "hello")?;
    let first = json(&s.ok(&["volume", "snapshot", "v", "--name", "s1", "--json"])?)?;
    let again = json(&s.ok(&["volume", "snapshot", "v", "--name", "s2", "--json"])?)?;
    ensure!(again["unchanged"] == true && again["base"] == first["id"], "{again}");
    let text = s.ok(&["volume", "snapshot", "v", "--name", "s2"])?;
    ensure!(text.contains("nothing changed"), "{text}");
    let snapshots = json(&s.ok(&["volume", "snapshots", "web", "--json"])?)?;
    ensure!(snapshots.as_array().is_some_and(|all| all.len() == 1), "{snapshots}");
    s.ok(&["volume", "snapshot", "v", "--name", "s2", "--allow-empty"])?;

    let code = |args: &[&str]| -> anyhow::Result<(Option<i32>, String)> {
        let out = s.run(args)?;
        Ok((out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned()))
    };
    let (status, stderr) = code(&["volumeset", "rm", "web", "--force"])?;
    ensure!(status == Some(5) && stderr.contains("volume rm"), "{status:?}: {stderr}");
    s.ok(&["volume", "rm", "v"])?;
    ensure!(!path.exists(), "the volume's directory is removed");
    ensure!(code(&["volume", "rm", "v"])?.0 == Some(3));
    let (status, stderr) = code(&["volumeset", "rm", "web"])?;
    ensure!(status == Some(5) && stderr.contains("--force"), "{status:?}: {stderr}");
    let removed = s.ok(&["volumeset", "rm", "web", "--force"])?;
    ensure!(removed.contains("2 snapshots"), "{removed}");
    let listed = json(&s.ok(&["volumeset", "ls", "--json"])?)?;
    ensure!(listed.as_array().is_some_and(|sets| sets.is_empty()), "{listed}");
    ensure!(code(&["volumeset", "rm", "web"])?.0 == Some(3));
    Ok(())
}
