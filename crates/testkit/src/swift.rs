//! A real OpenStack Swift for tests: an all-in-one cluster on loopback.
//!
//! One device directory, account, container and object rings with one replica built by
//! `swift-ring-builder`, the four servers (`workers = 0`, so each is one process the harness
//! can kill), tempauth with the user `test:tester` (key `testing`, an admin of account
//! `AUTH_test`) and memcached, which tempauth keeps its tokens in. Every configuration file
//! names the temporary directory as `swift_dir`, so nothing under `/etc/swift` is read.
//!
//! This is not a Swift client: it speaks just enough HTTP/1.0 to get a token and to create
//! containers and objects, so tests can set up what they then reach through their own clients.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{ServerProcess, ensure_program, free_port, wait_until};

/// The tempauth user every test Swift has, as `account:user`.
pub const SWIFT_USER: &str = "test:tester";
/// The key (password) of [`SWIFT_USER`].
pub const SWIFT_KEY: &str = "testing";
/// A second tempauth user, `test2:tester2`, with its own account `AUTH_test2` and no
/// rights on `AUTH_test`: its token is valid but forbidden there.
pub const SWIFT_OTHER_USER: (&str, &str) = ("test2:tester2", "testing2");

/// The Debian packages of a Swift cluster, each with a program it installs.
const PACKAGES: [(&str, &str); 6] = [
    ("swift-ring-builder", "swift"),
    ("swift-proxy-server", "swift-proxy"),
    ("swift-account-server", "swift-account"),
    ("swift-container-server", "swift-container"),
    ("swift-object-server", "swift-object"),
    ("memcached", "memcached"),
];

/// The storage servers, in start order: (ring and server name, program).
const SERVERS: [(&str, &str); 3] = [
    ("account", "swift-account-server"),
    ("container", "swift-container-server"),
    ("object", "swift-object-server"),
];

/// A running Swift cluster; every process is killed and the directory removed on drop.
#[derive(Debug)]
pub struct Swift {
    ports: Ports,
    /// memcached, which keeps tempauth's tokens; it stays up across [`Swift::stop`], so
    /// tokens issued before a stop are still good after [`Swift::restart`].
    memcached: ServerProcess,
    /// The proxy and the three storage servers; empty while stopped.
    servers: Vec<ServerProcess>,
    /// Configuration, rings, the device and logs; removed on drop after the processes.
    dir: tempfile::TempDir,
}

/// The loopback ports of one cluster; the rings name the storage servers' ports, so a
/// restart reuses them.
#[derive(Debug, Clone, Copy)]
struct Ports {
    proxy: u16,
    memcached: u16,
    account: u16,
    container: u16,
    object: u16,
}

/// What `/auth/v1.0` hands out: a token and the account's storage URL.
#[derive(Debug, Clone)]
pub struct SwiftAuth {
    /// The `X-Auth-Token` to send.
    pub token: String,
    /// The account URL, `http://127.0.0.1:PORT/v1/AUTH_test`.
    pub storage_url: String,
}

/// A response of the harness's minimal HTTP client.
#[derive(Debug, Clone)]
pub struct SwiftResponse {
    /// The status code.
    pub status: u16,
    /// Header lines as (lower-case name, value).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SwiftResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

impl Swift {
    /// Installs Swift and memcached if needed (Debian packages `swift`, `swift-proxy`,
    /// `swift-account`, `swift-container`, `swift-object`, `memcached`) and starts a
    /// cluster on free loopback ports. Returns once the proxy answers `/healthcheck` and
    /// tempauth hands out tokens.
    pub fn start() -> anyhow::Result<Swift> {
        for (program, package) in PACKAGES {
            ensure_program(program, package)?;
        }
        let mut last = None;
        for _ in 0..3 {
            match Swift::try_start() {
                Ok(swift) => return Ok(swift),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("swift did not start")))
    }

    fn try_start() -> anyhow::Result<Swift> {
        let dir = crate::process::scratch_dir("strata-swift-")?;
        let ports = Ports {
            proxy: free_port()?,
            memcached: free_port()?,
            account: free_port()?,
            container: free_port()?,
            object: free_port()?,
        };
        write_configuration(dir.path(), &ports)?;
        let mut command = Command::new("memcached");
        command.args(["-u", "root", "-l", "127.0.0.1", "-U", "0", "-c", "4096", "-p"]);
        command.arg(ports.memcached.to_string());
        let memcached =
            ServerProcess::spawn("memcached", command, &dir.path().join("memcached.log"))?;
        let mut swift = Swift { ports, memcached, servers: Vec::new(), dir };
        swift.restart()?;
        Ok(swift)
    }

    /// The proxy's URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports.proxy)
    }

    /// The proxy's port.
    pub fn proxy_port(&self) -> u16 {
        self.ports.proxy
    }

    /// The directory with configuration, rings, the device and the servers' logs.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the proxy and the storage servers (SIGKILL), leaving memcached and the data.
    /// Requests to the proxy's port are refused until [`Swift::restart`].
    pub fn stop(&mut self) {
        for mut server in self.servers.drain(..).rev() {
            server.kill();
        }
    }

    /// Starts the storage servers and the proxy (again) on the same ports and data, and
    /// waits until the proxy serves. Stops whatever still runs first.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.memcached.check_running()?;
        for (name, program) in SERVERS {
            let conf = self.dir.path().join(format!("{name}-server.conf"));
            self.servers.push(spawn_server(program, &conf, self.dir.path())?);
        }
        let conf = self.dir.path().join("proxy-server.conf");
        self.servers.push(spawn_server("swift-proxy-server", &conf, self.dir.path())?);
        let ready = wait_until("swift", Duration::from_secs(60), || {
            for server in &mut self.servers {
                server.check_running()?;
            }
            Ok(self.ready())
        });
        if let Err(err) = ready {
            let logs = self.logs();
            self.stop();
            return Err(err).context(format!("swift logs:\n{logs}"));
        }
        Ok(())
    }

    /// True when the storage servers accept connections, the proxy answers its health
    /// check, and tempauth issues a token, which needs memcached.
    fn ready(&self) -> bool {
        let ports = [self.ports.account, self.ports.container, self.ports.object];
        let listening = ports.iter().all(|&port| TcpStream::connect(("127.0.0.1", port)).is_ok());
        let healthy =
            || self.request("GET", "/healthcheck", &[], b"").is_ok_and(|r| r.status == 200);
        listening && healthy() && self.auth().is_ok()
    }

    /// Gets a token for [`SWIFT_USER`] from `/auth/v1.0`.
    pub fn auth(&self) -> anyhow::Result<SwiftAuth> {
        self.auth_as(SWIFT_USER, SWIFT_KEY)
    }

    /// Gets a token for `user` (`account:user`) with `key` from `/auth/v1.0`.
    pub fn auth_as(&self, user: &str, key: &str) -> anyhow::Result<SwiftAuth> {
        let headers = [("X-Auth-User", user), ("X-Auth-Key", key)];
        let response = self.request("GET", "/auth/v1.0", &headers, b"")?;
        if response.status != 200 {
            bail!("swift /auth/v1.0: status {}", response.status);
        }
        let token = response.header("x-auth-token").context("no x-auth-token")?.to_string();
        let storage_url = response.header("x-storage-url").context("no x-storage-url")?.to_string();
        Ok(SwiftAuth { token, storage_url })
    }

    /// Creates (or keeps) container `container` of the test account.
    pub fn put_container(&self, auth: &SwiftAuth, container: &str) -> anyhow::Result<()> {
        self.put(auth, container, b"")
    }

    /// Writes object `container/object` and returns its full URL, the `X-Storage-Url`
    /// of a checkpoint kept there.
    pub fn put_object(
        &self,
        auth: &SwiftAuth,
        container: &str,
        object: &str,
        body: &[u8],
    ) -> anyhow::Result<String> {
        self.put(auth, &format!("{container}/{object}"), body)?;
        Ok(format!("{}/{container}/{object}", auth.storage_url))
    }

    fn put(&self, auth: &SwiftAuth, path: &str, body: &[u8]) -> anyhow::Result<()> {
        let path = format!("{}/{path}", account_path(&auth.storage_url)?);
        // Right after a start, creating the account on first use can fail with 503 for a
        // moment; anything else is final.
        for _ in 0..50 {
            let response = self.request("PUT", &path, &[("X-Auth-Token", &auth.token)], body)?;
            match response.status {
                200..300 => return Ok(()),
                500..600 => std::thread::sleep(Duration::from_millis(200)),
                status => bail!("swift PUT {path}: status {status}"),
            }
        }
        bail!("swift PUT {path}: still failing with 5xx after 10 s\n{}", self.logs())
    }

    /// One HTTP/1.0 request to the proxy; `path` starts with `/`.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> anyhow::Result<SwiftResponse> {
        http_request(self.ports.proxy, method, path, headers, body)
    }

    /// Every server's log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for name in ["proxy", "account", "container", "object"] {
            let log = self.dir.path().join(format!("{name}-server.log"));
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            out.push_str(&format!("== {name}-server\n{text}\n"));
        }
        out
    }
}

/// One Swift for the whole test process, started on first use. Tests share it by using
/// their own containers or objects; a test that stops Swift starts its own.
pub fn shared_swift() -> &'static Swift {
    static SWIFT: OnceLock<Swift> = OnceLock::new();
    SWIFT.get_or_init(|| Swift::start().unwrap_or_else(|err| panic!("cannot start swift: {err:#}")))
}

fn spawn_server(program: &str, conf: &Path, dir: &Path) -> anyhow::Result<ServerProcess> {
    let name = conf.file_stem().and_then(|s| s.to_str()).unwrap_or(program);
    let mut command = Command::new(program);
    // `-v` also logs to the console, which goes to the log file; there is no syslog here.
    command.arg(conf).arg("-v");
    ServerProcess::spawn(program, command, &dir.join(format!("{name}.log")))
}

/// Writes `swift.conf`, the rings and the four servers' configuration into `dir`.
fn write_configuration(dir: &Path, ports: &Ports) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("devices/d1"))?;
    write(dir, "swift.conf", SWIFT_CONF)?;
    let common = |port: u16| {
        format!(
            "[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = {port}\nswift_dir = {dir}\n\
             devices = {dir}/devices\nmount_check = false\nuser = root\nworkers = 0\n\
             log_level = WARNING\n",
            dir = dir.display()
        )
    };
    for ((name, _), port) in SERVERS.iter().zip([ports.account, ports.container, ports.object]) {
        build_ring(dir, name, port)?;
        let conf = format!(
            "{}\n[pipeline:main]\npipeline = {name}-server\n\n[app:{name}-server]\n\
             use = egg:swift#{name}\n",
            common(port)
        );
        write(dir, &format!("{name}-server.conf"), &conf)?;
    }
    let proxy = format!(
        "{}{}\nmemcache_servers = 127.0.0.1:{}\n",
        common(ports.proxy),
        PROXY_PIPELINE,
        ports.memcached
    );
    write(dir, "proxy-server.conf", &proxy)
}

/// A ring with one device and one replica; part power 6 keeps building it instant.
fn build_ring(dir: &Path, name: &str, port: u16) -> anyhow::Result<()> {
    let builder = format!("{name}.builder");
    let device = format!("r1z1-127.0.0.1:{port}/d1");
    let steps: [&[&str]; 3] = [&["create", "6", "1", "0"], &["add", &device, "1"], &["rebalance"]];
    for args in steps {
        let output = Command::new("swift-ring-builder")
            .current_dir(dir)
            .arg(&builder)
            .args(args)
            .output()
            .context("run swift-ring-builder")?;
        // Exit status 1 is "finished with warnings", which a one-device ring always has.
        if !matches!(output.status.code(), Some(0 | 1)) {
            bail!(
                "swift-ring-builder {builder} {}: {}\n{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout)
            );
        }
    }
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("write {}", path.display()))
}

const SWIFT_CONF: &str = "\
[swift-hash]
swift_hash_path_suffix = strata-test
swift_hash_path_prefix = strata-test

[storage-policy:0]
name = Policy-0
default = yes
";

/// The proxy's pipeline after `[DEFAULT]`; the memcache filter's server line follows it.
/// The memcache client gets enough connections for hundreds of concurrent requests, and
/// never gives up on its one server: by default it allows 2 connections, waits 1 s for one,
/// and after 10 errors skips the server for 60 s, which tempauth reports as 401 for every
/// token.
const PROXY_PIPELINE: &str = "
[pipeline:main]
pipeline = catch_errors healthcheck cache tempauth proxy-server

[app:proxy-server]
use = egg:swift#proxy
allow_account_management = true
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = testing .admin
user_test2_tester2 = testing2

[filter:healthcheck]
use = egg:swift#healthcheck

[filter:catch_errors]
use = egg:swift#catch_errors

[filter:cache]
use = egg:swift#memcache
memcache_max_connections = 512
pool_timeout = 30
error_suppression_limit = 1000000";

/// The path part of a storage URL, `/v1/AUTH_test`.
fn account_path(storage_url: &str) -> anyhow::Result<String> {
    let rest = storage_url.split_once("://").map_or(storage_url, |(_, rest)| rest);
    let slash = rest.find('/').with_context(|| format!("storage url {storage_url}: no path"))?;
    Ok(rest[slash..].to_string())
}

/// A minimal HTTP/1.0 exchange on 127.0.0.1:`port`; the server closes the connection.
fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<SwiftResponse> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream.write_all(request.as_bytes())?;
    stream.write_all(body)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> anyhow::Result<SwiftResponse> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    Ok(SwiftResponse { status, headers, body: raw[end + 4..].to_vec() })
}
