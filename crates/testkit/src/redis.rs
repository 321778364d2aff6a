//! Real Redis servers for tests: `redis-server` processes on free loopback ports, without
//! persistence, each in its own temporary directory.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::process::{ServerProcess, ensure_program, free_port, wait_until};

/// Running `redis-server` processes; stopped and their directory removed on drop.
#[derive(Debug)]
pub struct RedisServers {
    /// One per server; `None` once killed.
    processes: Vec<Option<ServerProcess>>,
    ports: Vec<u16>,
    /// The servers' working directories, removed on drop after the processes are gone.
    dir: tempfile::TempDir,
}

impl RedisServers {
    /// Installs Redis if needed (Debian `redis-server`) and starts `n` servers.
    pub fn start(n: usize) -> anyhow::Result<RedisServers> {
        ensure_program("redis-server", "redis-server")?;
        let dir = crate::process::scratch_dir("strata-redis-")?;
        let mut servers = RedisServers { processes: Vec::new(), ports: Vec::new(), dir };
        for i in 0..n {
            let mut last = None;
            for _ in 0..3 {
                match free_port().and_then(|port| Ok((port, servers.start_one(i, port)?))) {
                    Ok((port, process)) => {
                        servers.processes.push(Some(process));
                        servers.ports.push(port);
                        last = None;
                        break;
                    }
                    Err(err) => last = Some(err),
                }
            }
            if let Some(err) = last {
                return Err(err.context(format!("start redis server {i}")));
            }
        }
        Ok(servers)
    }

    /// Starts server `i` again, on its port, empty (it keeps nothing on disk). A server
    /// still running is killed first.
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill(i);
        let port = *self.ports.get(i).context("no such redis server")?;
        let process = self.start_one(i, port)?;
        self.processes[i] = Some(process);
        Ok(())
    }

    fn start_one(&self, i: usize, port: u16) -> anyhow::Result<ServerProcess> {
        let dir = self.dir.path().join(format!("redis-{i}"));
        std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&dir);
        let log = dir.join("redis.log");
        let mut process = ServerProcess::spawn("redis-server", command, &log)?;
        let ready = wait_until("redis-server", Duration::from_secs(10), || {
            process.check_running()?;
            Ok(ping(port))
        });
        if let Err(err) = ready {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(err).context(format!("redis-server log:\n{output}"));
        }
        Ok(process)
    }

    /// The servers' addresses, `127.0.0.1:PORT`, in order.
    pub fn addresses(&self) -> Vec<String> {
        self.ports.iter().map(|port| format!("127.0.0.1:{port}")).collect()
    }

    /// Kills server `i` with SIGKILL; its data is gone with it.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut process) = self.processes.get_mut(i).and_then(Option::take) {
            process.kill();
        }
    }

    /// Stops server `i` with SIGSTOP: it keeps its connections and data but answers
    /// nothing, as a server that hangs or is being restarted, until [`RedisServers::resume`].
    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")
    }

    /// Lets server `i` go on after [`RedisServers::pause`].
    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT")
    }

    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let process = self.processes.get(i).and_then(Option::as_ref).context("no such server")?;
        let status = Command::new("kill").args([signal, &process.pid().to_string()]).status()?;
        anyhow::ensure!(status.success(), "kill {signal} redis server {i}: {status}");
        Ok(())
    }

    /// Sends one inline command (such as `FLUSHALL`) to server `i`; its first reply line.
    pub fn command(&self, i: usize, command: &str) -> anyhow::Result<String> {
        let port = *self.ports.get(i).context("no such redis server")?;
        let mut stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(format!("{command}\r\n").as_bytes())?;
        let mut reply = [0u8; 512];
        let n = stream.read(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply[..n]).lines().next().unwrap_or_default().to_string())
    }
}

fn ping(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut reply = [0u8; 16];
    matches!(stream.read(&mut reply), Ok(n) if reply[..n].starts_with(b"+PONG"))
}
