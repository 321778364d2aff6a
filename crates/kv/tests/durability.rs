//! Durability: a process committing transactions is killed with SIGKILL at random moments;
//! every transaction it reported committed must be there after reopening.
//!
//! The test binary plays both parts: run with `STRATA_KV_KILL_CHILD` set, the test below is
//! the child that commits from four threads and prints what was acknowledged.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use strata_kv::{Read, Store};

const CHILD_ENV: &str = "STRATA_KV_KILL_CHILD";
const THREADS: u64 = 4;

fn value_for(id: u64) -> Vec<u8> {
    format!("value of {id}").repeat((id % 7 + 1) as usize).into_bytes()
}

#[test]
fn acknowledged_commits_survive_sigkill() -> anyhow::Result<()> {
    if let Ok(spec) = std::env::var(CHILD_ENV) {
        return child(&spec);
    }
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    let mut acknowledged = BTreeSet::new();
    let mut next = 0u64;
    for round in 0..12 {
        let run_for = Duration::from_millis(30 + fastrand_ms(round) % 300);
        let seen = run_and_kill(&path, next, run_for)?;
        next += 1_000_000;
        acknowledged.extend(seen);
        let store = Store::redb(&path).context("reopen after SIGKILL")?;
        let mut txn = store.read()?;
        for id in &acknowledged {
            let value = txn.get(&id.to_be_bytes())?;
            ensure!(value == Some(value_for(*id)), "round {round}: acknowledged {id} lost");
        }
    }
    ensure!(acknowledged.len() > 100, "only {} commits acknowledged", acknowledged.len());
    Ok(())
}

/// A process killed at any moment while it creates a new store leaves one the next process
/// opens: the file appears only once whole.
#[test]
fn a_process_killed_while_creating_its_file_leaves_it_openable() -> anyhow::Result<()> {
    if std::env::var(CHILD_ENV).is_ok() {
        return Ok(());
    }
    for delay_ms in 0..60 {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kv.redb");
        let delay = Duration::from_micros(delay_ms * 500);
        run_and_kill(&path, 0, delay)?;
        let store = Store::redb(&path).with_context(|| format!("reopen after {delay:?}"))?;
        drop(store);
    }
    // A killed creator's temporary file is swept by the next creation in its directory.
    let dir = tempfile::tempdir()?;
    let abandoned = dir.path().join(".kv.redb.999999999.0.new");
    std::fs::write(&abandoned, b"half a database")?;
    Store::redb(&dir.path().join("kv.redb"))?;
    ensure!(!abandoned.exists(), "an abandoned creation was left");
    Ok(())
}

/// Threads that create one file at once: one opens it, the others find it held, and no
/// temporary file is left behind.
#[test]
fn threads_creating_one_file_at_once_leave_one_whole_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    let opened: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8).map(|_| scope.spawn(|| Store::redb(&path))).collect();
        racers.into_iter().map(|racer| racer.join()).collect()
    });
    let mut stores = Vec::new();
    for result in opened {
        match result.map_err(|_| anyhow::anyhow!("a creating thread panicked"))? {
            Ok(store) => stores.push(store),
            Err(err) => ensure!(err.to_string().contains("already open"), "{err}"),
        }
    }
    ensure!(!stores.is_empty(), "no thread opened the file");
    drop(stores);
    let names: Vec<_> = std::fs::read_dir(dir.path())?
        .map(|entry| entry.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    ensure!(names == ["kv.redb"], "left in the directory: {names:?}");
    Store::redb(&path)?;
    Ok(())
}

/// A varying but reproducible delay for each round.
fn fastrand_ms(round: u64) -> u64 {
    round.wrapping_mul(2654435761) % 1000
}

/// Runs a child committing from id `first` on, kills it after `run_for`, and returns the ids
/// it acknowledged.
fn run_and_kill(path: &Path, first: u64, run_for: Duration) -> anyhow::Result<Vec<u64>> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "durability::acknowledged_commits_survive_sigkill", "--nocapture"])
        .env(CHILD_ENV, format!("{}:{first}", path.display()))
        .stdout(Stdio::piped())
        .spawn()?;
    let stdout = child.stdout.take().context("child stdout")?;
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| line.strip_prefix("committed ").and_then(|n| n.parse().ok()))
            .collect::<Vec<u64>>()
    });
    let started = Instant::now();
    std::thread::sleep(run_for);
    child.kill()?;
    child.wait()?;
    let ids = reader.join().map_err(|_| anyhow::anyhow!("reader thread panicked"))?;
    ensure!(started.elapsed() >= run_for);
    Ok(ids)
}

/// The child: commits transactions from several threads forever and reports each one after
/// its commit returned.
fn child(spec: &str) -> anyhow::Result<()> {
    let (path, first) = spec.rsplit_once(':').context("child spec")?;
    let first: u64 = first.parse()?;
    let store = Store::redb(Path::new(path))?;
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let store = store.clone();
            scope.spawn(move || -> anyhow::Result<()> {
                let mut id = first + thread;
                loop {
                    let mut txn = store.write()?;
                    txn.put(&id.to_be_bytes(), &value_for(id));
                    txn.put(format!("last/{thread}").as_bytes(), &id.to_be_bytes());
                    txn.commit()?;
                    #[allow(
                        clippy::print_stdout,
                        reason = "the parent reads acknowledgements here"
                    )]
                    {
                        println!("committed {id}");
                    }
                    id += THREADS;
                }
            });
        }
    });
    Ok(())
}

#[test]
fn a_redb_file_held_elsewhere_is_busy_and_waiting_opens_it_once_released() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("kv.redb");
    let holder = Store::redb(&path)?;
    let err = Store::redb(&path).err().context("a second open succeeded")?;
    ensure!(err.category() == strata_kv::Category::Unavailable, "{err}");
    ensure!(err.to_string().contains("already open"), "{err}");
    let short = Store::redb_waiting(&path, Duration::from_millis(50)).err();
    ensure!(short.is_some(), "waiting 50 ms opened a file still held");

    let release = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(holder);
    });
    let started = Instant::now();
    let store = Store::redb_waiting(&path, Duration::from_secs(10))?;
    ensure!(started.elapsed() >= Duration::from_millis(150), "opened before the release");
    release.join().map_err(|_| anyhow::anyhow!("release thread panicked"))?;
    store.with_txn(|txn| {
        txn.put(b"k", b"v");
        Ok::<_, strata_kv::Error>(())
    })?;
    Ok(())
}
