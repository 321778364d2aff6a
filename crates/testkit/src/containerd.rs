//! A real containerd for tests: its own root, state and sockets in a temporary directory,
//! CRI and the built-in snapshotters disabled, and strata's proxy snapshotter plugged in
//! under the name `strata`. Not a strata server: the test serves the socket it passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::process::{ServerProcess, ensure_program, wait_until};

/// The containerd namespace [`Containerd::ctr`] works in.
pub const CTR_NAMESPACE: &str = "strata-test";

/// Plugins the tests never use; disabling them keeps containerd from touching the host
/// (`/opt/containerd`, CRI's network setup) and makes a forgotten `--snapshotter strata` fail
/// loudly instead of quietly using overlayfs.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.native",
    "io.containerd.snapshotter.v1.overlayfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
];

/// A running containerd; killed and its directory removed on drop.
#[derive(Debug)]
pub struct Containerd {
    /// Dropped first, so the process is gone before its directory is removed.
    process: ServerProcess,
    /// Root, state, sockets, config and log.
    dir: tempfile::TempDir,
}

impl Containerd {
    /// Installs containerd if needed (Debian `containerd`, which brings `ctr` and `runc`)
    /// and starts it with the proxy snapshotter `strata` at `snapshotter_socket`. The socket
    /// need not be served yet: containerd connects on first use.
    pub fn start(snapshotter_socket: &Path) -> anyhow::Result<Containerd> {
        ensure_program("containerd", "containerd")?;
        ensure_program("ctr", "containerd")?;
        let dir = tempfile::Builder::new().prefix("strata-containerd-").tempdir()?;
        let config = dir.path().join("config.toml");
        std::fs::write(&config, config_toml(dir.path(), snapshotter_socket))
            .with_context(|| format!("write {}", config.display()))?;
        let mut command = Command::new("containerd");
        command.arg("--config").arg(&config);
        let log = dir.path().join("containerd.log");
        let mut process = ServerProcess::spawn("containerd", command, &log)?;
        let address = dir.path().join("containerd.sock");
        let ready = wait_until("containerd", Duration::from_secs(30), || {
            process.check_running()?;
            Ok(std::os::unix::net::UnixStream::connect(&address).is_ok())
        });
        if let Err(err) = ready {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err).context(format!("containerd log:\n{output}"));
        }
        Ok(Containerd { process, dir })
    }

    /// The gRPC socket `ctr --address` takes.
    pub fn address(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// The directory holding root, state, config and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// Runs `ctr --address … --namespace strata-test ARGS…` and returns its output,
    /// whatever its exit status.
    pub fn ctr(&self, args: &[&str]) -> anyhow::Result<Output> {
        Command::new("ctr")
            .arg("--address")
            .arg(self.address())
            .args(["--namespace", CTR_NAMESPACE])
            .args(args)
            .output()
            .with_context(|| format!("run ctr {}", args.join(" ")))
    }

    /// Runs ctr like [`Containerd::ctr`] and returns its standard output; an error with
    /// its standard error when it fails.
    pub fn ctr_ok(&self, args: &[&str]) -> anyhow::Result<String> {
        let output = self.ctr(args)?;
        if !output.status.success() {
            bail!(
                "ctr {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

/// containerd's configuration (version 2) for a test instance under `dir`. Garbage
/// collection runs after every deletion, so a removed snapshot reaches the proxy snapshotter
/// promptly rather than after a hundred more changes.
fn config_toml(dir: &Path, snapshotter_socket: &Path) -> String {
    let disabled: Vec<String> = DISABLED_PLUGINS.iter().map(|p| format!("{p:?}")).collect();
    let path = |name: &str| format!("{:?}", dir.join(name).display().to_string());
    format!(
        "version = 2\n\
         root = {root}\n\
         state = {state}\n\
         disabled_plugins = [{disabled}]\n\
         \n\
         [grpc]\n  address = {grpc}\n\
         \n\
         [ttrpc]\n  address = {ttrpc}\n\
         \n\
         [debug]\n  level = \"info\"\n\
         \n\
         [plugins.\"io.containerd.gc.v1.scheduler\"]\n  deletion_threshold = 1\n\
         \n\
         [proxy_plugins.strata]\n  type = \"snapshot\"\n  address = {proxy:?}\n",
        root = path("root"),
        state = path("state"),
        disabled = disabled.join(", "),
        grpc = path("containerd.sock"),
        ttrpc = path("containerd.sock.ttrpc"),
        proxy = snapshotter_socket.display().to_string(),
    )
}
