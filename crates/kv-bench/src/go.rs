//! Running the Go peers: benchmarks of a compiled Go test binary (`go test -c`), whose
//! `ns/op` lines are read back; small Go programs of bench/go that print one JSON object;
//! and [`Peer`], a Go program that stays up and answers one JSON line per command line, so
//! its runs can alternate with strata's.
//!
//! The scripts build the Go code with Debian's Go and Go sources and pass the binaries'
//! paths; this module only runs them and reads what they print.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::measure::Summary;

/// Runs the benchmarks of `test_binary` that match `pattern` (`go test -bench`'s syntax),
/// each for `benchtime` (Go's syntax: `1500ms`, or `20000x` for a count), and none of its
/// tests; returns what it printed.
pub fn run_benchmarks(
    test_binary: &Path,
    pattern: &str,
    benchtime: &str,
) -> anyhow::Result<String> {
    let output = Command::new(test_binary)
        .args(["-test.run", "X", "-test.bench", pattern])
        .arg(format!("-test.benchtime={benchtime}"))
        .output()
        .with_context(|| format!("run {}", test_binary.display()))?;
    Ok(String::from_utf8_lossy(&succeeded(test_binary, output)?.stdout).into_owned())
}

/// The result of benchmark `name` (`Suite/WriteTransaction` for the line
/// `BenchmarkSuite/WriteTransaction-2   3652   546594 ns/op`) in `output`. Go reports the
/// operation count and `ns/op` only, so the summary has no percentiles.
pub fn benchmark(output: &str, name: &str) -> anyhow::Result<Summary> {
    let (count, ns_per_op) =
        go_result(output, name).with_context(|| format!("no {name} result in:\n{output}"))?;
    let elapsed = Duration::from_secs_f64(count as f64 * ns_per_op / 1e9);
    Ok(Summary { count, elapsed, p50: None, p99: None })
}

/// What the Go peer programs print for one timed run: operations, the seconds the run took,
/// and the median and 99th percentile latency in nanoseconds (0 when nothing ran).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PeerRun {
    /// Operations finished (`commits` in boltupdate's output).
    #[serde(alias = "commits")]
    pub count: u64,
    /// Wall-clock seconds of the run.
    pub seconds: f64,
    /// Median latency, nanoseconds.
    pub p50_ns: u64,
    /// 99th percentile latency, nanoseconds.
    pub p99_ns: u64,
}

impl From<PeerRun> for Summary {
    fn from(run: PeerRun) -> Summary {
        let latency = |ns| (run.count > 0).then(|| Duration::from_nanos(ns));
        Summary {
            count: run.count,
            elapsed: Duration::from_secs_f64(run.seconds),
            p50: latency(run.p50_ns),
            p99: latency(run.p99_ns),
        }
    }
}

/// Runs a Go peer program and parses the one JSON object it prints on stdout.
pub fn run_peer<T: DeserializeOwned>(mut command: Command) -> anyhow::Result<T> {
    let program = Path::new(command.get_program()).to_path_buf();
    let output = command.output().with_context(|| format!("run {}", program.display()))?;
    let output = succeeded(&program, output)?;
    serde_json::from_slice(&output.stdout)
        .with_context(|| format!("parse the output of {}", program.display()))
}

/// A Go program that reads commands on stdin, one per line, and answers each with one line
/// of JSON on stdout. Dropping it closes its stdin, which ends it, and waits for it.
#[derive(Debug)]
pub struct Peer {
    program: PathBuf,
    child: Child,
    /// Where commands go; `None` once closed.
    commands: Option<ChildStdin>,
    answers: BufReader<ChildStdout>,
}

impl Peer {
    /// Starts `command`; its stderr is kept for the error when it fails.
    pub fn start(mut command: Command) -> anyhow::Result<Peer> {
        let program = Path::new(command.get_program()).to_path_buf();
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("run {}", program.display()))?;
        let commands = child.stdin.take();
        let answers = child.stdout.take().map(BufReader::new);
        let answers = answers.with_context(|| format!("no stdout from {}", program.display()))?;
        Ok(Peer { program, child, commands, answers })
    }

    /// Sends `command` and parses the answer.
    pub fn ask<T: DeserializeOwned>(&mut self, command: &str) -> anyhow::Result<T> {
        let mut answer = String::new();
        let sent = match self.commands.as_mut() {
            Some(commands) => writeln!(commands, "{command}").and_then(|()| commands.flush()),
            None => Ok(()),
        };
        if sent.is_err() || self.answers.read_line(&mut answer)? == 0 {
            return Err(self.failure(command));
        }
        serde_json::from_str(&answer).with_context(|| {
            format!("parse the answer of {} to {command:?}: {answer}", self.program.display())
        })
    }

    /// Why the program stopped answering: its exit status and stderr.
    fn failure(&mut self, command: &str) -> anyhow::Error {
        self.commands.take();
        let mut stderr = String::new();
        if let Some(mut pipe) = self.child.stderr.take() {
            let _ = pipe.read_to_string(&mut stderr);
        }
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_default();
        anyhow::anyhow!(
            "{} did not answer {command:?} ({status}): {}",
            self.program.display(),
            stderr.trim_end()
        )
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.commands.take();
        let _ = self.child.wait();
    }
}

fn succeeded(program: &Path, output: Output) -> anyhow::Result<Output> {
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            program.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// The operation count and `ns/op` of benchmark `name` in `go test -bench` output. The name
/// must match whole: `Suite/Commit` does not match `Suite/StatCommitted`. Go appends
/// `-GOMAXPROCS` to the name unless it is 1.
fn go_result(output: &str, name: &str) -> Option<(u64, f64)> {
    output.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [bench, count, ns, "ns/op", ..] = fields.as_slice() else { return None };
        let bench = bench.strip_prefix("Benchmark")?;
        let bare = bench.rsplit_once('-').map_or(bench, |(bare, procs)| {
            if procs.bytes().all(|b| b.is_ascii_digit()) { bare } else { bench }
        });
        if bare != name {
            return None;
        }
        Some((count.parse().ok()?, ns.parse().ok()?))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_go_bench_output() {
        let output = "goos: linux\n\
            BenchmarkSuite/WriteTransaction-2   \t    3652\t    546594 ns/op\n\
            BenchmarkSuite/StatCommitted-2   \t  300000\t      4021 ns/op\n\
            BenchmarkSuite/Commit   \t  100000\t     11000 ns/op\n\
            PASS\n";
        assert_eq!(go_result(output, "Suite/WriteTransaction"), Some((3652, 546594.0)));
        assert_eq!(go_result(output, "Suite/Commit"), Some((100000, 11000.0)));
        assert_eq!(go_result(output, "Suite/StatCommitted"), Some((300000, 4021.0)));
        assert_eq!(go_result(output, "Suite/ReadTransaction"), None);
        assert_eq!(go_result(output, "WriteTransaction"), None);
    }

    #[test]
    fn reads_peer_runs() -> anyhow::Result<()> {
        let bolt: PeerRun =
            serde_json::from_str(r#"{"commits":3,"seconds":0.5,"p50_ns":7,"p99_ns":9}"#)?;
        let summary = Summary::from(bolt);
        assert_eq!((summary.count, summary.p50), (3, Some(Duration::from_nanos(7))));
        let idle: PeerRun =
            serde_json::from_str(r#"{"op":"Commit","count":0,"seconds":0,"p50_ns":0,"p99_ns":0}"#)?;
        assert_eq!(Summary::from(idle).p99, None);
        Ok(())
    }
}
