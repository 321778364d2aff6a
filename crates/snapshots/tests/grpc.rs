//! The Snapshots gRPC service over its unix socket, in-process: every call through a tonic
//! client generated from the same .proto, error codes for bad input, and malformed HTTP/2
//! and gRPC traffic that must never take the server down. containerd itself is driven in
//! `containerd.rs`; [`TestServer`] is shared with it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use strata_snapshots::Snapshotter;
use strata_snapshots::grpc::proto::snapshots_client::SnapshotsClient;
use strata_snapshots::grpc::proto::{
    CleanupRequest, CommitSnapshotRequest, Info, Kind, ListSnapshotsRequest, MountsRequest,
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest, UpdateSnapshotRequest,
    UsageRequest, ViewSnapshotRequest,
};
use strata_snapshots::grpc::{self, ServeConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

type Client = SnapshotsClient<Channel>;

/// A snapshotter (redb metadata, layers in a temporary root) served on a unix socket by a
/// runtime of its own, so tests stay synchronous and can run blocking tools beside it.
pub(crate) struct TestServer {
    /// The snapshotter the server serves, for checking what calls did.
    pub(crate) snapshotter: Snapshotter,
    pub(crate) socket: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<strata_snapshots::Result<()>>>,
    runtime: tokio::runtime::Runtime,
    /// Root and socket; removed last.
    dir: tempfile::TempDir,
}

impl TestServer {
    pub(crate) fn start() -> anyhow::Result<TestServer> {
        TestServer::start_with(ServeConfig::default())
    }

    pub(crate) fn start_with(config: ServeConfig) -> anyhow::Result<TestServer> {
        let dir = tempfile::Builder::new().prefix("strata-grpc-").tempdir()?;
        let store = strata_kv::Store::redb(&dir.path().join("metadata.redb"))?;
        let snapshotter = Snapshotter::new(&dir.path().join("root"), store)?;
        let socket = dir.path().join("strata.sock");
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (served, path) = (snapshotter.clone(), socket.clone());
        let task = runtime.spawn(async move {
            grpc::serve_with(served, &path, &config, async {
                let _ = stopped.await;
            })
            .await
        });
        strata_testkit::wait_until("snapshots socket", Duration::from_secs(10), || {
            Ok(std::os::unix::net::UnixStream::connect(&socket).is_ok())
        })?;
        Ok(TestServer { snapshotter, socket, stop: Some(stop), task: Some(task), runtime, dir })
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn block_on<T>(&self, future: impl Future<Output = T>) -> T {
        self.runtime.block_on(future)
    }

    /// Stops the server and returns what `serve` returned.
    pub(crate) fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().context("server already stopped")?;
        self.runtime.block_on(task)??;
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A tonic client on the unix socket.
pub(crate) async fn connect(socket: &Path) -> anyhow::Result<Client> {
    let socket = socket.to_path_buf();
    let channel = Endpoint::from_static("http://strata.invalid")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(socket).await?)) }
        }))
        .await?;
    Ok(SnapshotsClient::new(channel))
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn prepare(key: &str, parent: &str) -> PrepareSnapshotRequest {
    PrepareSnapshotRequest {
        snapshotter: "strata".into(),
        key: key.into(),
        parent: parent.into(),
        labels: BTreeMap::new(),
    }
}

fn view(key: &str, parent: &str) -> ViewSnapshotRequest {
    ViewSnapshotRequest { key: key.into(), parent: parent.into(), ..Default::default() }
}

fn commit(name: &str, key: &str) -> CommitSnapshotRequest {
    CommitSnapshotRequest { name: name.into(), key: key.into(), ..Default::default() }
}

fn stat(key: &str) -> StatSnapshotRequest {
    StatSnapshotRequest { key: key.into(), ..Default::default() }
}

async fn list(client: &mut Client, filters: &[&str]) -> Result<Vec<Vec<Info>>, tonic::Status> {
    let filters = filters.iter().map(|f| f.to_string()).collect();
    let request = ListSnapshotsRequest { snapshotter: String::new(), filters };
    let mut stream = client.list(request).await?.into_inner();
    let mut batches = Vec::new();
    while let Some(batch) = stream.message().await? {
        batches.push(batch.info);
    }
    Ok(batches)
}

#[test]
fn every_call_round_trips() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.block_on(async {
        let mut c = connect(&server.socket).await?;
        let mounts = c.prepare(prepare("a", "")).await?.into_inner().mounts;
        assert_eq!(mounts.len(), 1);
        assert_eq!(
            (mounts[0].r#type.as_str(), mounts[0].options.clone()),
            ("bind", vec!["rw".to_string(), "rbind".into()])
        );
        std::fs::write(Path::new(&mounts[0].source).join("hello.txt"), vec![7u8; 10_000])?;
        let again = c.mounts(MountsRequest { key: "a".into(), ..Default::default() }).await?;
        assert_eq!(again.into_inner().mounts, mounts);

        let mut req = commit("base", "a");
        req.labels = labels(&[("team", "storage")]);
        c.commit(req).await?;
        let info = c.stat(stat("base")).await?.into_inner().info.context("no info")?;
        assert_eq!((info.kind(), info.parent.as_str()), (Kind::Committed, ""));
        assert_eq!(info.labels, labels(&[("team", "storage")]));
        assert!(info.created_at.is_some_and(|t| t.seconds > 1_600_000_000));
        let usage = c.usage(UsageRequest { key: "base".into(), ..Default::default() }).await?;
        let usage = usage.into_inner();
        assert!(usage.size >= 10_000 && usage.inodes >= 2, "{usage:?}");

        let v = c.view(view("v", "base")).await?.into_inner().mounts;
        assert!(v[0].options.contains(&"ro".to_string()), "{v:?}");
        let b = c.prepare(prepare("b", "base")).await?.into_inner().mounts;
        assert_eq!(b[0].r#type, "overlay");
        assert!(b[0].options.iter().any(|o| o.starts_with("lowerdir=")), "{b:?}");

        let mut info = c.stat(stat("b")).await?.into_inner().info.context("no info")?;
        info.labels = labels(&[("x", "1"), ("y", "2")]);
        let mask = prost_types::FieldMask { paths: vec!["labels.x".into()] };
        let update = UpdateSnapshotRequest {
            info: Some(info),
            update_mask: Some(mask),
            ..Default::default()
        };
        let updated = c.update(update).await?.into_inner().info.context("no info")?;
        assert_eq!(updated.labels, labels(&[("x", "1")]));
        let time = |t: Option<prost_types::Timestamp>| t.map(|t| (t.seconds, t.nanos));
        assert!(time(updated.updated_at) > time(updated.created_at));

        let active = list(&mut c, &["kind==active"]).await?.concat();
        assert_eq!(active.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(), ["b"]);
        let either = list(&mut c, &["labels.x==1", "name==v"]).await?.concat();
        assert_eq!(either.len(), 2);

        let status = c.remove(RemoveSnapshotRequest { key: "base".into(), ..Default::default() });
        assert_eq!(status.await.unwrap_err().code(), Code::FailedPrecondition);
        for key in ["b", "v", "base"] {
            c.remove(RemoveSnapshotRequest { key: key.into(), ..Default::default() }).await?;
        }
        assert!(list(&mut c, &[]).await?.is_empty());
        // Cleanup deletes layer directories no snapshot names (a crash leaves those).
        let orphan = server.root().join("snapshots/12345/fs");
        std::fs::create_dir_all(&orphan)?;
        c.cleanup(CleanupRequest::default()).await?;
        assert!(!orphan.parent().context("no parent")?.exists(), "orphan layer survived");
        anyhow::Ok(())
    })?;
    server.stop()
}

#[test]
fn bad_input_gets_the_right_codes() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.block_on(async {
        let mut c = connect(&server.socket).await?;
        c.prepare(prepare("active", "")).await?;
        c.prepare(prepare("tmp", "")).await?;
        c.commit(commit("base", "tmp")).await?;
        c.view(view("view", "base")).await?;
        let big = "v".repeat(5000);
        let mut big_label = prepare("x", "");
        big_label.labels = labels(&[("k", &big)]);
        let mut empty_label = prepare("x", "");
        empty_label.labels = labels(&[("", "v")]);
        let info = |name: &str, kind: i32| Info { name: name.into(), kind, ..Default::default() };
        let update = |info: Option<Info>, paths: &[&str]| UpdateSnapshotRequest {
            info,
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|p| p.to_string()).collect(),
            }),
            ..Default::default()
        };
        let usage = UsageRequest { key: "missing".into(), ..Default::default() };
        let remove = |key: &str| RemoveSnapshotRequest { key: key.into(), ..Default::default() };
        let mounts = MountsRequest { key: "base".into(), ..Default::default() };

        let cases: Vec<(&str, Result<(), tonic::Status>, Code)> = vec![
            ("stat missing", c.stat(stat("missing")).await.map(drop), Code::NotFound),
            ("stat empty key", c.stat(stat("")).await.map(drop), Code::InvalidArgument),
            (
                "prepare twice",
                c.prepare(prepare("active", "")).await.map(drop),
                Code::AlreadyExists,
            ),
            ("missing parent", c.prepare(prepare("x", "nope")).await.map(drop), Code::NotFound),
            (
                "active parent",
                c.prepare(prepare("x", "active")).await.map(drop),
                Code::InvalidArgument,
            ),
            ("view of active", c.view(view("x", "active")).await.map(drop), Code::InvalidArgument),
            ("mounts of committed", c.mounts(mounts).await.map(drop), Code::FailedPrecondition),
            (
                "commit a view",
                c.commit(commit("c", "view")).await.map(drop),
                Code::FailedPrecondition,
            ),
            (
                "commit onto a name",
                c.commit(commit("base", "active")).await.map(drop),
                Code::AlreadyExists,
            ),
            ("commit missing", c.commit(commit("c", "missing")).await.map(drop), Code::NotFound),
            (
                "commit no name",
                c.commit(commit("", "active")).await.map(drop),
                Code::InvalidArgument,
            ),
            ("remove parent", c.remove(remove("base")).await.map(drop), Code::FailedPrecondition),
            ("remove missing", c.remove(remove("missing")).await.map(drop), Code::NotFound),
            ("update no info", c.update(update(None, &[])).await.map(drop), Code::InvalidArgument),
            (
                "update name",
                c.update(update(Some(info("active", 2)), &["name"])).await.map(drop),
                Code::InvalidArgument,
            ),
            (
                "update label of missing",
                c.update(update(Some(info("nope", 2)), &["labels.a"])).await.map(drop),
                Code::NotFound,
            ),
            (
                "update bad kind",
                c.update(update(Some(info("active", 42)), &["labels.a"])).await.map(drop),
                Code::InvalidArgument,
            ),
            ("bad filter", list(&mut c, &["kind=active"]).await.map(drop), Code::InvalidArgument),
            (
                "unterminated filter",
                list(&mut c, &["labels.\"open"]).await.map(drop),
                Code::InvalidArgument,
            ),
            ("bad regexp", list(&mut c, &["name~=/(/"]).await.map(drop), Code::InvalidArgument),
            ("usage missing", c.usage(usage).await.map(drop), Code::NotFound),
            ("label too big", c.prepare(big_label).await.map(drop), Code::InvalidArgument),
            ("empty label key", c.prepare(empty_label).await.map(drop), Code::InvalidArgument),
        ];
        for (what, result, code) in cases {
            let status = result.err().with_context(|| format!("{what}: succeeded"))?;
            assert_eq!(status.code(), code, "{what}: {status:?}");
            assert!(!status.message().is_empty(), "{what}: no message");
        }
        let missing = c.stat(stat("missing")).await.unwrap_err();
        assert_eq!(missing.message(), "snapshot missing: not found");
        // Nothing the failures touched changed.
        assert_eq!(list(&mut c, &[]).await?.concat().len(), 3);
        anyhow::Ok(())
    })?;
    server.stop()
}

#[test]
fn list_streams_in_batches() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    for i in 0..250 {
        server.snapshotter.prepare(
            &format!("s{i:03}"),
            "",
            labels(&[("even", &(i % 2 == 0).to_string())]),
        )?;
    }
    server.block_on(async {
        let mut c = connect(&server.socket).await?;
        let batches = list(&mut c, &[]).await?;
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [100, 100, 50]);
        let names: Vec<String> = batches.concat().into_iter().map(|i| i.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!((names.len(), names == sorted), (250, true));
        let even = list(&mut c, &["labels.even==true"]).await?.concat();
        assert_eq!(even.len(), 125);
        assert!(list(&mut c, &["name==none"]).await?.is_empty());
        anyhow::Ok(())
    })?;
    server.stop()
}

/// Sends one gRPC call with `body` as the raw request body over HTTP/2 and returns the
/// `grpc-status` the server answered with (from the headers or the trailers).
async fn raw_call(socket: &Path, method: &str, body: Bytes) -> anyhow::Result<String> {
    let io = UnixStream::connect(socket).await?;
    let (client, connection) = h2::client::handshake(io).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = client.ready().await?;
    let request = http::Request::builder()
        .method("POST")
        .uri(format!("http://strata.invalid/containerd.services.snapshots.v1.Snapshots/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(())?;
    let (response, mut send) = client.send_request(request, false)?;
    send.send_data(body, true)?;
    let response = tokio::time::timeout(Duration::from_secs(10), response).await??;
    let (parts, mut body) = response.into_parts();
    if let Some(status) = parts.headers.get("grpc-status") {
        return Ok(status.to_str()?.to_string());
    }
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let trailers = body.trailers().await?.context("no trailers")?;
    let status = trailers.get("grpc-status").context("no grpc-status")?;
    Ok(status.to_str()?.to_string())
}

/// A gRPC length-prefixed frame: `compressed`, the big-endian `length`, then `payload`.
fn frame(compressed: u8, length: u32, payload: &[u8]) -> Bytes {
    let mut bytes = vec![compressed];
    bytes.extend_from_slice(&length.to_be_bytes());
    bytes.extend_from_slice(payload);
    Bytes::from(bytes)
}

#[test]
fn malformed_requests_never_crash_the_server() -> anyhow::Result<()> {
    let server = TestServer::start()?;
    server.block_on(async {
        let socket = server.socket.as_path();
        let garbage = [0xff_u8; 16];
        let cases = [
            ("Stat", frame(0, 16, &garbage), "13"), // not protobuf: internal
            ("Prepare", frame(0, 1 << 30, b"x"), "11"), // length past the limit
            ("Stat", Bytes::from_static(b"\x00\x00"), "13"), // truncated frame header
            ("Stat", frame(1, 3, b"abc"), "13"),    // compressed, no encoding
            ("Stat", frame(7, 3, b"abc"), "13"),    // no such compression flag
            ("NoSuchMethod", frame(0, 0, b""), "12"), // unimplemented
        ];
        for (method, body, want) in cases {
            let status = raw_call(socket, method, body).await?;
            assert_eq!(status, want, "{method}");
        }
        // Random bodies on random methods: whatever they decode to, an answer comes back.
        let methods =
            ["Prepare", "View", "Mounts", "Commit", "Remove", "Stat", "Update", "List", "Usage"];
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..60 {
            let payload: Vec<u8> = (0..rng.usize(0..64)).map(|_| rng.u8(..)).collect();
            let method = methods[rng.usize(..methods.len())];
            let body = frame(0, payload.len() as u32, &payload);
            raw_call(socket, method, body)
                .await
                .with_context(|| format!("{method} {payload:?}"))?;
        }
        // Bytes that are not HTTP/2 at all: the server closes that connection only.
        let mut raw = UnixStream::connect(socket).await?;
        raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01garbage\xff\xfe").await?;
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut sink))
            .await
            .context("server kept a garbage connection open")?;
        // A close with our bytes unread is a reset: closed all the same.
        if let Err(err) = read {
            assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset, "{err}");
        }
        // An oversized request fails alone; the client's connection stays usable.
        let mut c = connect(socket).await?;
        let mut huge = prepare("huge", "");
        huge.labels = labels(&[("k", &"v".repeat(5 << 20))]);
        assert_eq!(c.prepare(huge).await.unwrap_err().code(), Code::OutOfRange);
        c.prepare(prepare("after", "")).await?;
        let names: Vec<String> =
            list(&mut c, &[]).await?.concat().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["after"]);
        anyhow::Ok(())
    })?;
    server.stop()
}

#[test]
fn connections_beyond_the_limit_wait_their_turn() -> anyhow::Result<()> {
    let server = TestServer::start_with(ServeConfig { max_connections: 1, ..Default::default() })?;
    server.block_on(async {
        let mut first = connect(&server.socket).await?;
        first.prepare(prepare("first", "")).await?;
        let socket = server.socket.clone();
        let second = tokio::spawn(async move {
            let mut c = connect(&socket).await?;
            c.stat(stat("first")).await?;
            anyhow::Ok(())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!second.is_finished(), "a second connection was served beyond the limit");
        drop(first);
        tokio::time::timeout(Duration::from_secs(10), second).await???;
        anyhow::Ok(())
    })?;
    server.stop()
}

#[test]
fn serve_replaces_a_stale_socket_and_refuses_a_live_one() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&socket)?);
    assert!(socket.exists(), "the stale socket file stays behind");
    let snapshotter = Snapshotter::new(&dir.path().join("root"), strata_kv::Store::memory()?)?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (served, path) = (snapshotter.clone(), socket.clone());
        let live = tokio::spawn(async move {
            grpc::serve(served, &path, async {
                let _ = stopped.await;
            })
            .await
        });
        let mut c = loop {
            if let Ok(c) = connect(&socket).await {
                break c;
            }
            if live.is_finished() {
                bail!("the server stopped: {:?}", live.await);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        c.prepare(prepare("k", "")).await?;

        let second = grpc::serve(snapshotter.clone(), &socket, std::future::pending()).await;
        let err = second.err().context("a second server bound a live socket")?;
        assert!(err.to_string().contains("another server is listening"), "{err}");

        let file = dir.path().join("file");
        std::fs::write(&file, "not a socket")?;
        let err = grpc::serve(snapshotter.clone(), &file, std::future::pending()).await;
        let err = err.err().context("served on a regular file")?;
        assert!(err.to_string().contains("not a socket"), "{err}");
        assert_eq!(std::fs::read_to_string(&file)?, "not a socket");

        let _ = stop.send(());
        live.await??;
        assert!(!socket.exists(), "the socket is removed at shutdown");
        anyhow::Ok(())
    })
}
