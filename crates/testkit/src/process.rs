//! Starting, watching and stopping server processes, and installing them when missing.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running server process; killed and reaped on drop.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    name: String,
}

impl ServerProcess {
    /// Starts `command`, with its output appended to `log`. The process gets SIGKILL when the
    /// test process exits, whichever way it exits.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<ServerProcess> {
        let out =
            std::fs::File::create(log).with_context(|| format!("create {}", log.display()))?;
        command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out);
        let child = spawner().spawn(command).with_context(|| format!("start {name}"))?;
        Ok(ServerProcess { child, name: name.to_string() })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails when the process has exited already.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited early with {status}", self.name);
        }
        Ok(())
    }

    /// Sends SIGTERM and waits up to 60 s for the process to exit; fails unless it exits
    /// successfully (a clean shutdown).
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        let pid = libc::pid_t::try_from(self.child.id())?;
        #[allow(unsafe_code, reason = "sending a signal to our own child")]
        // SAFETY: kill(2) on a child this process spawned and has not reaped.
        let sent = unsafe { libc::kill(pid, libc::SIGTERM) };
        if sent != 0 {
            bail!("SIGTERM to {}: {}", self.name, std::io::Error::last_os_error());
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                if !status.success() {
                    bail!("{} exited with {status} after SIGTERM", self.name);
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{} still runs 60 s after SIGTERM", self.name);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends SIGKILL and reaps the process.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Children get `PR_SET_PDEATHSIG`, which fires when the *thread* that forked them ends, so
/// one thread that never ends does all the forking.
struct Spawner {
    requests: Mutex<mpsc::Sender<(Command, mpsc::Sender<std::io::Result<Child>>)>>,
}

impl Spawner {
    fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (tx, rx) = mpsc::channel();
        self.requests
            .lock()
            .map_err(|_| std::io::Error::other("spawner lock poisoned"))?
            .send((command, tx))
            .map_err(|_| std::io::Error::other("spawner thread gone"))?;
        rx.recv().map_err(|_| std::io::Error::other("spawner thread gone"))?
    }
}

fn spawner() -> &'static Spawner {
    static SPAWNER: OnceLock<Spawner> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Command, mpsc::Sender<std::io::Result<Child>>)>();
        std::thread::Builder::new()
            .name("testkit-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let _ = reply.send(spawn_with_death_signal(&mut command));
                }
                // Keep the thread, and so the death signal's anchor, alive for good.
                loop {
                    std::thread::park();
                }
            })
            .unwrap_or_else(|err| panic!("cannot start the testkit spawner thread: {err}"));
        Spawner { requests: Mutex::new(tx) }
    })
}

#[allow(unsafe_code, reason = "prctl in pre_exec is the only way to tie a child to our life")]
fn spawn_with_death_signal(command: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    command.spawn()
}

/// A loopback TCP port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Makes sure `program` is on the PATH, installing Debian's `package` when it is not.
pub fn ensure_program(program: &str, package: &str) -> anyhow::Result<()> {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _serialized = INSTALL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if on_path(program) {
        return Ok(());
    }
    eprintln!("testkit: {program} is missing; installing Debian package {package}");
    let install = |update: bool| -> anyhow::Result<bool> {
        if update {
            Command::new("apt-get").args(["update", "-qq"]).status()?;
        }
        let status = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()?;
        Ok(status.success())
    };
    let installed = install(false).unwrap_or(false) || install(true).unwrap_or(false);
    if !installed || !on_path(program) {
        bail!(
            "{program} is not installed and `apt-get install {package}` failed; install it \
             (scripts/test does, as root) and run the tests again"
        );
    }
    Ok(())
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Polls `ready` every 20 ms until it returns true or `timeout` passes.
pub fn wait_until(
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if ready()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what} not ready after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory named `PREFIX…` for a server's files, marked with this process's
/// id. Servers shared by a whole test process live in statics, which are never dropped, so
/// their directories outlive the process; each call first removes the directories of this
/// prefix whose process is gone, so runs do not pile them up.
pub fn scratch_dir(prefix: &str) -> anyhow::Result<tempfile::TempDir> {
    let root = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let stale = entry.file_name().to_string_lossy().starts_with(prefix)
                && std::fs::read_to_string(entry.path().join(OWNER))
                    .ok()
                    .and_then(|pid| pid.trim().parse::<u32>().ok())
                    .is_some_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
            if stale {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = tempfile::Builder::new().prefix(prefix).tempdir()?;
    std::fs::write(dir.path().join(OWNER), std::process::id().to_string())?;
    Ok(dir)
}

/// The file in a [`scratch_dir`] naming the process that made it.
const OWNER: &str = "owner.pid";
