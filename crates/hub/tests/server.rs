//! The HTTP server: the OpenAPI document covers every route, clear 4xx errors, users and
//! grants, and push and pull with blobs over a socket.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};

use strata_hub::server::ROUTES;
use strata_hub::tokens::{Tokens, create_token};
use strata_hub::{
    Category, Client, Hub, HubServerConfig, HubService, Local, NoProgress, OPENAPI, Remote, Server,
};
use strata_kv::Store;
use strata_volume::BlobStore;

use crate::util::snap;

struct Running {
    addr: SocketAddr,
    dir: tempfile::TempDir,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<strata_hub::Result<()>>>,
}

impl Running {
    fn start(max_body_bytes: usize) -> anyhow::Result<Running> {
        Running::start_with(HubServerConfig { max_body_bytes, ..HubServerConfig::default() })
    }

    fn start_with(config: HubServerConfig) -> anyhow::Result<Running> {
        let dir = tempfile::tempdir()?;
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let service = HubService::new(
            Hub::new(Store::redb(&dir.path().join("store.redb"))?, ""),
            BlobStore::open(&dir.path().join("blobs"))?,
        );
        let config = HubServerConfig { listen: "127.0.0.1:0".into(), ..config };
        let tokens = Tokens::open(dir.path());
        let server = runtime.block_on(Server::bind(config, service, tokens))?;
        let addr = server.local_addr();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let done = runtime.spawn(server.run(async move {
            let _ = stopped.await;
        }));
        Ok(Running { addr, dir, runtime, stop: Some(stop), done: Some(done) })
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn token(&self, user: &str) -> anyhow::Result<String> {
        Ok(create_token(self.dir.path(), user)?)
    }

    /// Sends a raw request and returns the status and body.
    fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &[u8],
    ) -> anyhow::Result<(u16, String)> {
        let mut stream = TcpStream::connect(self.addr)?;
        let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: hub\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status: u16 = text.split(' ').nth(1).unwrap_or("0").parse()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Ok((status, body))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = self.done.take() {
            let _ = self.runtime.block_on(done);
        }
    }
}

#[test]
fn openapi_documents_every_route() -> anyhow::Result<()> {
    for (method, path) in ROUTES {
        let key = format!("\n  {path}:\n");
        let start = OPENAPI
            .find(&key)
            .ok_or_else(|| anyhow::anyhow!("{path} is not in docs/hub-openapi.yaml"))?;
        let section = &OPENAPI[start + key.len() - 1..];
        let end = section.find("\n  /").unwrap_or(section.len());
        let section = &section[..end];
        assert!(
            section.contains(&format!("\n    {}:", method.to_lowercase())),
            "{method} {path} is not documented"
        );
    }
    let hub = Running::start(1 << 20)?;
    let (status, body) = hub.raw("GET", "/openapi.yaml", None, b"")?;
    assert_eq!(status, 200);
    assert!(body.starts_with("openapi: 3"));
    // Every listed route reaches a handler: without a token, each asks for one.
    for (method, path) in ROUTES.iter().filter(|(_, path)| *path != "/openapi.yaml") {
        let path = path.replace("{id}", "some-id");
        let (status, body) = hub.raw(method, &path, None, b"")?;
        assert_eq!(status, 401, "{method} {path}: {body}");
        let json: serde_json::Value = serde_json::from_str(&body)?;
        assert_eq!(json["category"], "unauthenticated", "{method} {path}: {body}");
    }
    Ok(())
}

#[test]
fn clear_client_errors() -> anyhow::Result<()> {
    let hub = Running::start(1 << 20)?;
    let token = hub.token("alice")?;
    let t = Some(token.as_str());
    let check = |method: &str,
                 path: &str,
                 token: Option<&str>,
                 body: &[u8],
                 want: u16,
                 says: &str|
     -> anyhow::Result<()> {
        let (status, text) = hub.raw(method, path, token, body)?;
        assert_eq!(status, want, "{method} {path}: {text}");
        let json: serde_json::Value = serde_json::from_str(&text)?;
        let error = json["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{method} {path}: {error:?} does not say {says:?}");
        Ok(())
    };
    check("GET", "/v1/whoami", None, b"", 401, "Bearer")?;
    check("GET", "/v1/whoami", Some("wrong-token"), b"", 401, "unknown token")?;
    let (status, body) = hub.raw("GET", "/v1/whoami", t, b"")?;
    assert_eq!((status, body.contains("alice")), (200, true));
    check("GET", "/v1/volumesets/0123-4567", t, b"", 404, "no volume set")?;
    check("GET", "/v1/snapshots/0123-4567", t, b"", 404, "no snapshot")?;
    check("GET", "/v1/nothing-here", t, b"", 404, "no route")?;
    check("DELETE", "/v1/whoami", t, b"", 405, "no route")?;
    check("POST", "/v1/blobs/missing", t, b"{not json", 400, "malformed JSON")?;
    check("POST", "/v1/blobs/missing", t, br#"{"ids": 7}"#, 422, "does not fit")?;
    check("POST", "/v1/blobs/missing", t, br#"{"ids": ["xyz"]}"#, 400, "not a blob id")?;
    check("GET", "/v1/volumesets?limit=many", t, b"", 400, "expected a number")?;
    check("GET", "/v1/volumesets?sort=na%6De&order=up", t, b"", 400, "order=\"up\"")?;
    // A trailing slash names the same route; query values are percent-decoded.
    let (status, body) = hub.raw("GET", "/v1/whoami/", t, b"")?;
    assert_eq!((status, body.contains("alice")), (200, true), "{body}");
    let (status, body) = hub.raw("GET", "/v1/volumesets/?name=a%20b&sort=na%6De", t, b"")?;
    assert_eq!((status, body.as_str()), (200, "[]"));
    check("GET", "/v1/blobs/abc", t, b"", 400, "needs ?volumeset=ID")?;
    let big = vec![b' '; 2 << 20];
    check("POST", "/v1/blobs/missing", t, &big, 413, "over")?;
    // A blob whose bytes do not hash to its id.
    let id = "00".repeat(32);
    check("PUT", &format!("/v1/blobs/{id}"), t, b"some bytes", 422, "rejected")?;
    // An invalid branch name in an import.
    let vsid = "0000-1111";
    let import = serde_json::json!({
        "volumeset": {"id": vsid, "name": "set"},
        "snapshots": [{"id": "aaaa-0001", "parent_id": null, "volset_id": vsid, "depth": 1}],
        "branches": [{"id": "bbbb-0001", "volset_id": vsid, "name": "bad:name", "tip": "aaaa-0001"}],
    });
    check(
        "POST",
        &format!("/v1/volumesets/{vsid}/import"),
        t,
        import.to_string().as_bytes(),
        400,
        "invalid branch name",
    )?;
    Ok(())
}

/// Over https: a client that trusts the test CA works and tokens are checked as over
/// http; one that does not is told the certificate is not trusted; a plain-http client is
/// told to use https; revoked tokens are refused at once; a half TLS config is refused.
#[test]
fn tls_hub_serves_clients_that_trust_its_ca() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    strata_testkit::make_certificates(certs.path())?;
    let hub = Running::start_with(HubServerConfig {
        tls_cert: Some(certs.path().join("server.pem")),
        tls_key: Some(certs.path().join("server.key")),
        ..HubServerConfig::default()
    })?;
    let url = format!("https://{}", hub.addr);
    let ca = certs.path().join("ca.pem");
    let token = hub.token("alice")?;
    let alice = Client::with_ca_file(&url, &token, Some(&ca))?;
    assert_eq!(hub.runtime.block_on(alice.whoami())?, "alice");

    let untrusting = Client::new(&url, &token)?;
    let err = hub.runtime.block_on(untrusting.whoami()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("certificate") && text.contains("--ca-file"), "{text}");
    assert_eq!(err.category(), Category::Unavailable);

    let plain = Client::new(&format!("http://{}", hub.addr), &token)?;
    let text = hub.runtime.block_on(plain.whoami()).unwrap_err().to_string();
    assert!(text.contains("https only") && text.contains("https://"), "{text}");

    let wrong = Client::with_ca_file(&url, "wrong-token", Some(&ca))?;
    let err = hub.runtime.block_on(wrong.whoami()).unwrap_err();
    assert_eq!(err.category(), Category::Unauthenticated, "{err}");
    assert!(err.to_string().contains("refused the token"), "{err}");

    let id = strata_hub::tokens::token_id(&token);
    let listed = strata_hub::tokens::list_tokens(hub.dir.path())?;
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].id.as_str(), listed[0].user.as_str()), (id.as_str(), "alice"));
    strata_hub::tokens::revoke_tokens(hub.dir.path(), strata_hub::tokens::Revoke::Id(&id))?;
    let err = hub.runtime.block_on(alice.whoami()).unwrap_err();
    assert_eq!(err.category(), Category::Unauthenticated, "{err}");

    let half = HubServerConfig {
        listen: "127.0.0.1:0".into(),
        tls_cert: Some(certs.path().join("server.pem")),
        ..HubServerConfig::default()
    };
    let service = HubService::new(
        Hub::new(Store::memory()?, ""),
        BlobStore::open(&certs.path().join("blobs"))?,
    );
    let bound = hub.runtime.block_on(Server::bind(half, service, Tokens::open(certs.path())));
    let text = bound.unwrap_err().to_string();
    assert!(text.contains("missing: tls_key"), "{text}");
    Ok(())
}

fn local(dir: &std::path::Path, name: &str) -> anyhow::Result<Local> {
    Ok(Local {
        hub: Hub::new(Store::redb(&dir.join(format!("{name}.redb")))?, ""),
        blobs: BlobStore::open(&dir.join(format!("{name}-blobs")))?,
    })
}

#[test]
fn push_and_pull_with_blobs_and_grants() -> anyhow::Result<()> {
    let hub = Running::start(64 << 20)?;
    let alice = Client::new(&hub.url(), &hub.token("alice")?)?;
    let bob = Client::new(&hub.url(), &hub.token("bob")?)?;
    let work = tempfile::tempdir()?;
    let a = local(work.path(), "a")?;
    let b = local(work.path(), "b")?;

    let vs = a.hub.create_volset("photos", "", "me")?;
    let content: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let mut writer = a.blobs.writer()?;
    writer.write_all(&content)?;
    let blob = writer.finish()?;
    let spec = strata_hub::NewSnapshot {
        blob_id: Some(blob.to_string()),
        size: content.len() as u64,
        ..snap("one")
    };
    let (_, s1) = a.hub.fork(&vs.id, None, "main", &spec)?;

    let report = hub.runtime.block_on(a.push(&alice, &vs.id, &NoProgress))?;
    assert_eq!((report.snapshots_pushed, report.blobs_pushed), (1, 1));
    let again = hub.runtime.block_on(a.push(&alice, &vs.id, &NoProgress))?;
    assert_eq!((again.snapshots_pushed, again.blobs_pushed), (0, 0), "only what the hub lacks");
    let on_hub = hub.runtime.block_on(alice.snapshot(&s1.id))?;
    assert_eq!(on_hub.creator, "alice");

    // Bob sees nothing of alice's until she shares it.
    assert!(hub.runtime.block_on(bob.volsets())?.is_empty());
    assert!(hub.runtime.block_on(b.pull(&bob, "photos", &NoProgress)).is_err());
    let (status, _) = hub.raw(
        "GET",
        &format!("/v1/blobs/{blob}?volumeset={}", vs.id),
        Some(&hub.token("carol")?),
        b"",
    )?;
    assert_eq!(status, 404);
    hub.runtime.block_on(alice.grant(&vs.id, "bob"))?;
    let pulled = hub.runtime.block_on(b.pull(&bob, "photos", &NoProgress))?;
    assert_eq!((pulled.snapshots_pulled, pulled.blobs_pulled), (1, 1));
    let mut copy = Vec::new();
    b.blobs.open_blob(&blob)?.read_to_end(&mut copy)?;
    assert!(copy == content, "the pulled blob is byte-identical");
    assert_eq!(b.hub.snapshot(&s1.id)?.blob_id, Some(blob.to_string()));
    assert!(hub.runtime.block_on(bob.missing_blobs(&[blob.to_string()]))?.is_empty());

    // Syncs over HTTP: the first reads everything and remembers revisions; the next ones ask
    // the hub only for what changed since.
    hub.runtime.block_on(a.sync(&alice, &vs.id, &NoProgress))?;
    hub.runtime.block_on(b.sync(&bob, &vs.id, &NoProgress))?;
    let mark = a.hub.sync_mark(&vs.id)?.ok_or_else(|| anyhow::anyhow!("no sync mark"))?;
    let mut writer = a.blobs.writer()?;
    writer.write_all(b"the second snapshot's blob")?;
    let blob2 = writer.finish()?;
    let spec = strata_hub::NewSnapshot { blob_id: Some(blob2.to_string()), ..snap("two") };
    let (_, s2) = a.hub.extend(&vs.id, &s1.id, &spec)?;
    let report = hub.runtime.block_on(a.sync(&alice, &vs.id, &NoProgress))?;
    assert_eq!((report.snapshots_pushed, report.blobs_pushed), (1, 1));
    let delta = hub.runtime.block_on(alice.export_since(&vs.id, &mark.remote))?;
    assert_eq!(delta.since.as_deref(), Some(mark.remote.as_str()));
    let listed: Vec<&str> = delta.snapshots.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(listed, [s2.id.as_str()], "only the new snapshot");
    for unknown in ["nonsense", "other-epoch:1", "a b&since=x:1"] {
        let full = hub.runtime.block_on(alice.export_since(&vs.id, unknown))?;
        assert_eq!((full.since, full.snapshots.len()), (None, 2), "revision {unknown:?}");
    }
    let mut meta = b.hub.snapshot(&s1.id)?.meta();
    meta.description = "described by bob".into();
    b.hub.update_snapshot_meta(&s1.id, &meta)?;
    let report = hub.runtime.block_on(b.sync(&bob, &vs.id, &NoProgress))?;
    assert_eq!((report.snapshots_pulled, report.blobs_pulled, report.metadata_pushed), (1, 1, 1));
    hub.runtime.block_on(a.sync(&alice, &vs.id, &NoProgress))?;
    assert_eq!(a.hub.snapshot(&s1.id)?.description, "described by bob");
    Ok(())
}

#[test]
fn idle_connections_are_closed_and_connections_are_bounded() -> anyhow::Result<()> {
    let hub = Running::start_with(HubServerConfig {
        max_connections: 1,
        idle_timeout: std::time::Duration::from_millis(300),
        ..HubServerConfig::default()
    })?;
    // An idle peer is cut off after the idle timeout.
    let mut idle = TcpStream::connect(hub.addr)?;
    idle.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the server closes an idle connection");
    assert!(started.elapsed() < std::time::Duration::from_secs(4));
    drop(idle);
    // With one connection allowed, a second client waits until the first is done.
    let first = TcpStream::connect(hub.addr)?;
    std::thread::sleep(std::time::Duration::from_millis(50));
    let addr = hub.addr;
    let waiting = std::thread::spawn(move || -> anyhow::Result<std::time::Instant> {
        let mut second = TcpStream::connect(addr)?;
        write!(second, "GET /openapi.yaml HTTP/1.1\r\nHost: hub\r\nConnection: close\r\n\r\n")?;
        let mut answer = Vec::new();
        second.read_to_end(&mut answer)?;
        anyhow::ensure!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
        Ok(std::time::Instant::now())
    });
    std::thread::sleep(std::time::Duration::from_millis(100));
    let released = std::time::Instant::now();
    drop(first);
    let answered = waiting.join().map_err(|_| anyhow::anyhow!("client thread panicked"))??;
    assert!(answered >= released, "the second connection was served only after the first closed");
    Ok(())
}

/// Writes `bytes` as a blob of `local` and returns its id.
fn blob_of(local: &Local, bytes: &[u8]) -> anyhow::Result<strata_volume::BlobId> {
    let mut writer = local.blobs.writer()?;
    writer.write_all(bytes)?;
    Ok(writer.finish()?)
}

#[test]
fn knowing_other_users_ids_opens_nothing() -> anyhow::Result<()> {
    let hub = Running::start(8 << 20)?;
    let alice = Client::new(&hub.url(), &hub.token("alice")?)?;
    let bob = Client::new(&hub.url(), &hub.token("bob")?)?;
    let mallory = hub.token("mallory")?;
    let m = Some(mallory.as_str());
    let work = tempfile::tempdir()?;
    let (a, b) = (local(work.path(), "a")?, local(work.path(), "b")?);

    // Alice's set: a snapshot with a blob, and a child that has no blob (yet).
    let secret = b"alice's secret bytes".repeat(1000);
    let blob = blob_of(&a, &secret)?;
    let vs = a.hub.create_volset("private", "", "me")?;
    let with_blob = strata_hub::NewSnapshot { blob_id: Some(blob.to_string()), ..snap("one") };
    let (_, s1) = a.hub.fork(&vs.id, None, "main", &with_blob)?;
    let (_, s2) = a.hub.extend(&vs.id, &s1.id, &snap("no blob"))?;
    hub.runtime.block_on(a.push(&alice, &vs.id, &NoProgress))?;
    let (vsid, blob) = (vs.id.clone(), blob.to_string());

    // Mallory knows every id. The hub's blob store holds alice's blob, but for mallory it
    // is missing, as any blob she never sent.
    let (status, body) =
        hub.raw("POST", "/v1/blobs/missing", m, format!(r#"{{"ids":["{blob}"]}}"#).as_bytes())?;
    assert_eq!((status, body.contains(&blob)), (200, true), "{body}");

    // Her own set, with a snapshot.
    let own = "cccc-0000-0000-0001";
    let import = |snapshots: serde_json::Value| {
        let body = serde_json::json!({
            "volumeset": {"id": own, "name": "mine"},
            "snapshots": snapshots,
            "branches": [],
        });
        hub.raw("POST", &format!("/v1/volumesets/{own}/import"), m, body.to_string().as_bytes())
    };
    let (status, body) = import(serde_json::json!([
        {"id": "cccc-0000-0000-0002", "parent_id": null, "volset_id": own, "depth": 1}
    ]))?;
    assert_eq!(status, 200, "{body}");

    // find-base through her set finds none of alice's snapshots, as target or as base.
    let find = |target: &str| {
        let body = serde_json::json!({"target": target, "candidates": [s1.id, s2.id]});
        hub.raw("POST", &format!("/v1/volumesets/{own}/find-base"), m, body.to_string().as_bytes())
    };
    let (status, body) = find(&s1.id)?;
    assert_eq!(status, 404, "{body}");
    assert!(!body.contains(&blob), "{body}");
    let (status, body) = find("cccc-0000-0000-0002")?;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains(&blob) && !body.contains(&s1.id), "{body}");

    // A snapshot of hers that names alice's blob is refused, so the blob cannot be
    // downloaded through her set.
    let (status, body) = import(serde_json::json!([
        {"id": "cccc-0000-0000-0003", "parent_id": null, "volset_id": own, "depth": 1,
         "blob_id": blob}
    ]))?;
    assert_eq!(status, 409, "{body}");
    let (status, _) = hub.raw("GET", &format!("/v1/blobs/{blob}?volumeset={own}"), m, b"")?;
    assert_eq!(status, 404);
    let (status, _) = hub.raw("GET", &format!("/v1/blobs/{blob}?volumeset={vsid}"), m, b"")?;
    assert_eq!(status, 404);

    // Importing alice's blobless snapshot's id into her set, with a blob of her own, does not
    // set that blob on alice's snapshot; neither does naming alice's set as the parent.
    let mine = blob_of(&b, b"mallory's bytes")?;
    let (status, body) = hub.raw("PUT", &format!("/v1/blobs/{mine}"), m, b"mallory's bytes")?;
    assert_eq!(status, 201, "{body}");
    let (status, body) = import(serde_json::json!([
        {"id": s2.id, "parent_id": null, "volset_id": own, "depth": 1, "blob_id": mine.to_string()}
    ]))?;
    assert_eq!(status, 409, "{body}");
    let (status, body) = import(serde_json::json!([
        {"id": "cccc-0000-0000-0004", "parent_id": s1.id, "volset_id": own, "depth": 2}
    ]))?;
    assert_eq!(status, 409, "{body}");
    assert!(!body.contains(&vsid), "{body}");
    assert_eq!(hub.runtime.block_on(alice.snapshot(&s2.id))?.blob_id, None);
    let (status, _) = hub.raw("GET", &format!("/v1/snapshots/{}", s2.id), m, b"")?;
    assert_eq!(status, 404);
    let (status, _) = hub.raw("GET", &format!("/v1/volumesets/{vsid}/export"), m, b"")?;
    assert_eq!(status, 404);

    // Bob holds the same bytes as alice: he sends them once, and then may use the blob.
    let bobs = b.hub.create_volset("bobs", "", "me")?;
    let same = blob_of(&b, &secret)?;
    let spec = strata_hub::NewSnapshot { blob_id: Some(same.to_string()), ..snap("bob's") };
    b.hub.fork(&bobs.id, None, "main", &spec)?;
    let pushed = hub.runtime.block_on(b.push(&bob, &bobs.id, &NoProgress))?;
    assert_eq!((pushed.snapshots_pushed, pushed.blobs_pushed), (1, 1));
    assert!(hub.runtime.block_on(bob.missing_blobs(&[same.to_string()]))?.is_empty());
    Ok(())
}

#[test]
fn ids_are_random_uuids() {
    let ids: std::collections::HashSet<String> =
        (0..1000).map(|_| strata_hub::model::new_id()).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        let parsed = uuid_version(id);
        assert_eq!(parsed, Some(4), "{id}");
    }
}

/// The version nibble of a UUID in its hyphenated form.
fn uuid_version(id: &str) -> Option<u32> {
    let groups: Vec<&str> = id.split('-').collect();
    let lengths: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lengths == [8, 4, 4, 4, 12] && id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()))
        .then(|| groups[2].chars().next().and_then(|c| c.to_digit(16)))
        .flatten()
}
