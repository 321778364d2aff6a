//! Helpers: the shared Swift with a container for the tests, fresh objects, in-process
//! servers on free ports, and raw HTTP requests.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use strata_ckpt::{CkptConfig, Client, ClientConfig, Server, Target};
use strata_kv::Store;
use strata_testkit::{Swift, SwiftAuth, shared_swift};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

/// The container every test object lives in.
pub const CONTAINER: &str = "ckpt-tests";

/// The shared Swift's token for the test user, with the test container created.
pub fn swift_auth() -> &'static SwiftAuth {
    static AUTH: OnceLock<SwiftAuth> = OnceLock::new();
    AUTH.get_or_init(|| {
        let setup = || -> anyhow::Result<SwiftAuth> {
            let auth = shared_swift().auth()?;
            shared_swift().put_container(&auth, CONTAINER)?;
            Ok(auth)
        };
        setup().unwrap_or_else(|err| panic!("cannot set up swift: {err:#}"))
    })
}

/// A new object with `content` in the shared Swift, and the target naming it.
pub fn new_object(content: &[u8]) -> anyhow::Result<Target> {
    new_object_in(shared_swift(), swift_auth(), content)
}

/// A new object with `content` in `swift`'s test container (created if needed).
pub fn new_object_in(swift: &Swift, auth: &SwiftAuth, content: &[u8]) -> anyhow::Result<Target> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("ckpt-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    swift.put_container(auth, CONTAINER)?;
    let storage_url = swift.put_object(auth, CONTAINER, &name, content)?;
    Ok(Target { storage_url, token: auth.token.clone() })
}

/// A configuration for tests: a free port, quick retries, short timeouts.
pub fn test_config() -> CkptConfig {
    CkptConfig {
        listen: "127.0.0.1:0".into(),
        swift_timeout_ms: 10_000,
        swift_retry_delay_ms: 20,
        swift_retry_limit: 3,
        idle_timeout_ms: 5_000,
        storage_hosts: vec![shared_swift().url()],
        ..CkptConfig::default()
    }
}

/// A server running in the test's runtime, with a client for it.
#[derive(Debug)]
pub struct Running {
    pub addr: SocketAddr,
    pub url: String,
    pub client: Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<strata_ckpt::Result<()>>,
}

impl Running {
    /// Binds `config` on `store` and starts serving.
    pub async fn start(config: &CkptConfig, store: Store) -> anyhow::Result<Running> {
        Running::start_with(config, store, None).await
    }

    /// Like [`Running::start`], with the client trusting `ca` (for TLS servers).
    pub async fn start_with(
        config: &CkptConfig,
        store: Store,
        ca: Option<std::path::PathBuf>,
    ) -> anyhow::Result<Running> {
        let server = Server::bind(config, store).await?;
        let (addr, url) = (server.local_addr(), server.url());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        let client_config =
            ClientConfig { server: url.clone(), ca_cert_file: ca, ..ClientConfig::default() };
        let client = Client::new(&client_config)?;
        Ok(Running { addr, url, client, shutdown: Some(shutdown), task })
    }

    /// Shuts the server down and waits until it has drained.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        tokio::time::timeout(Duration::from_secs(20), &mut self.task).await???;
        Ok(())
    }
}

/// A redb store in a fresh temporary directory, which the caller keeps alive.
pub fn redb_store() -> anyhow::Result<(Store, tempfile::TempDir)> {
    let dir = tempfile::tempdir()?;
    Ok((Store::redb(&dir.path().join("kv.redb"))?, dir))
}

/// A raw HTTP response.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Sends `request` (everything up to and including the blank line, then any body) on a
/// fresh connection with `Connection: close` semantics and reads the whole answer.
pub async fn raw(addr: SocketAddr, request: &str) -> anyhow::Result<Raw> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut bytes)).await??;
    let text = String::from_utf8_lossy(&bytes).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    Ok(Raw { status, head: head.to_string(), body: body.to_string() })
}

/// A request with the target's headers, `Connection: close`, and `extra` header lines.
pub fn request(method: &str, path: &str, target: &Target, extra: &str, body: &str) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: ckpt\r\nConnection: close\r\n\
         X-Storage-Url: {}\r\nX-Auth-Token: {}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        target.storage_url,
        target.token,
        body.len()
    )
}

/// The HTTP status of a client error, or 0 for other errors.
pub fn status(err: &strata_ckpt::Error) -> u16 {
    err.status().unwrap_or(0)
}
