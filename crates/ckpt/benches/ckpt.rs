//! The checkpoint service under load from `wrk`, against a real Swift, beside the bare
//! Swift GET every request performs.
//!
//! Starts a Swift (strata-testkit) and a checkpoint server in this process (redb in a
//! temporary directory), then runs `wrk` with 64 connections: rounds of bare Swift GETs of
//! the checkpoint object alternating with GETs through the service, so both see the same
//! machine, and one phase of PUT+POST pairs (a Lua script; one connection per wrk thread,
//! so each PUT's POST follows it on its own connection). Prints markdown tables: throughput,
//! p50 and p99 latency, and the service's overhead as ratios of the two GET phases.
//!
//! `BENCH_SECONDS` (per phase, default 10) and `BENCH_ROUNDS` (GET rounds, default 5) change
//! the durations, `BENCH_CONNECTIONS` (default 64) the load; `-- --test` (as CI runs benches)
//! does one short round to prove it works.
//! This is not a criterion benchmark: the load tool is the measuring instrument.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use strata_ckpt::{CkptConfig, Client, ClientConfig, Server, Target};
use strata_testkit::{Swift, ensure_program};

/// How much load, from the environment.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// Seconds per phase (`BENCH_SECONDS`, default 10).
    seconds: u64,
    /// Alternating GET rounds (`BENCH_ROUNDS`, default 5).
    rounds: usize,
    /// Connections of every phase (`BENCH_CONNECTIONS`, default 64).
    connections: usize,
}
/// A ProxyFS V1 checkpoint line: version, superblock object, length, reserved-to nonce.
const VALUE: &str = "0000000000000001 0000000000000002 0000000000000003 0000000000000004\n";

/// What one wrk run measured.
#[derive(Debug, Clone, Copy)]
struct Figures {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
    /// Responses other than 2xx and 3xx, and socket errors; must be 0.
    failures: u64,
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|arg| arg == "--test");
    let load = Load {
        seconds: env_or("BENCH_SECONDS", if quick { 1 } else { 10 })?,
        rounds: env_or("BENCH_ROUNDS", if quick { 1 } else { 5 })?,
        connections: env_or("BENCH_CONNECTIONS", 64)?,
    };
    ensure_program("wrk", "wrk")?;
    let swift = Swift::start()?;
    let auth = swift.auth()?;
    swift.put_container(&auth, "bench")?;
    let storage_url = swift.put_object(&auth, "bench", "checkpoint", VALUE.as_bytes())?;
    let target = Target { storage_url: storage_url.clone(), token: auth.token.clone() };

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let dir = tempfile::tempdir()?;
    let store = strata_kv::Store::redb(&dir.path().join("kv.redb"))?;
    let config = CkptConfig {
        listen: "127.0.0.1:0".into(),
        storage_hosts: vec![swift.url()],
        ..CkptConfig::default()
    };
    let server = runtime.block_on(Server::bind(&config, store))?;
    let url = server.url();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = runtime.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = Client::new(&ClientConfig { server: url.clone(), ..ClientConfig::default() })?;
    runtime.block_on(client.put(&target, VALUE.into()))?;

    let token = format!("X-Auth-Token: {}", auth.token);
    let storage = format!("X-Storage-Url: {storage_url}");
    let mut swift_gets = Vec::new();
    let mut ckpt_gets = Vec::new();
    let threads = load.connections.min(2);
    for _ in 0..load.rounds {
        swift_gets.push(wrk(&[&storage_url, "-H", &token], threads, &load)?);
        ckpt_gets.push(wrk(&[&url, "-H", &token, "-H", &storage], threads, &load)?);
    }
    let script = dir.path().join("put-post.lua");
    std::fs::write(&script, PUT_POST_LUA)?;
    let script = script.to_string_lossy().to_string();
    let put_post = wrk(
        &[&url, "-H", &token, "-H", &storage, "-s", &script, "--", "bench"],
        load.connections,
        &load,
    )?;
    let _ = stop.send(());
    runtime.block_on(serving)??;

    report(&median(&swift_gets), &median(&ckpt_gets), &put_post, &load);
    if quick {
        eprintln!("bench ckpt: --test run done");
    }
    Ok(())
}

/// Runs wrk with `args` (the URL first) and `threads` threads.
fn wrk(args: &[&str], threads: usize, load: &Load) -> anyhow::Result<Figures> {
    let output = Command::new("wrk")
        .args(["--latency", "-t", &threads.to_string(), "-c", &load.connections.to_string()])
        .args(["-d", &format!("{}s", load.seconds), "--timeout", "10s"])
        .args(args)
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&output.stdout).to_string();
    if !output.status.success() {
        bail!("wrk {args:?}: {}\n{text}{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    let figures = parse_wrk(&text).with_context(|| format!("wrk output:\n{text}"))?;
    if figures.failures > 0 {
        let errors = String::from_utf8_lossy(&output.stderr);
        bail!("wrk {args:?}: {} failed requests\n{text}{errors}", figures.failures);
    }
    Ok(figures)
}

fn parse_wrk(text: &str) -> anyhow::Result<Figures> {
    let field = |prefix: &str| {
        text.lines().map(str::trim).find_map(|line| line.strip_prefix(prefix).map(str::trim))
    };
    let requests_per_second = field("Requests/sec:").context("no Requests/sec")?.parse()?;
    let p50 = latency(field("50%").context("no 50% line")?)?;
    let p99 = latency(field("99%").context("no 99% line")?)?;
    let non_2xx: u64 = field("Non-2xx or 3xx responses:").map_or(Ok(0), str::parse)?;
    let socket_errors = field("Socket errors:").map_or(Ok(0), |errors| {
        // "connect 0, read 0, write 0, timeout 0"
        errors
            .split(',')
            .filter_map(|part| part.split_whitespace().nth(1))
            .map(str::parse::<u64>)
            .sum::<Result<u64, _>>()
    })?;
    Ok(Figures { requests_per_second, p50, p99, failures: non_2xx + socket_errors })
}

/// wrk's latencies: `372.95ms`, `1.01s`, `812.00us`.
fn latency(text: &str) -> anyhow::Result<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic()).context("latency without unit")?;
    let number: f64 = text[..split].parse()?;
    let seconds = match &text[split..] {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        unit => bail!("latency unit {unit:?}"),
    };
    Ok(Duration::from_secs_f64(seconds))
}

/// Each figure's median over the runs, taken separately.
fn median(runs: &[Figures]) -> Figures {
    fn middle<T: Copy>(
        runs: &[Figures],
        field: impl Fn(&Figures) -> T,
        cmp: impl Fn(&T, &T) -> std::cmp::Ordering,
    ) -> T {
        let mut values: Vec<T> = runs.iter().map(field).collect();
        values.sort_by(&cmp);
        values[values.len() / 2]
    }
    Figures {
        requests_per_second: middle(runs, |f| f.requests_per_second, f64::total_cmp),
        p50: middle(runs, |f| f.p50, Ord::cmp),
        p99: middle(runs, |f| f.p99, Ord::cmp),
        failures: runs.iter().map(|f| f.failures).sum(),
    }
}

#[allow(clippy::print_stdout, reason = "the report is this program's output")]
fn report(swift: &Figures, ckpt: &Figures, put_post: &Figures, load: &Load) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{} connections, {} s per phase; each GET figure is its median over {} alternating rounds.\n",
        load.connections, load.seconds, load.rounds
    );
    println!("| load | requests/s | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, f: &Figures, per: f64| {
        println!(
            "| {name} | {:.0} | {:.1} ms | {:.1} ms |",
            f.requests_per_second / per,
            ms(f.p50),
            ms(f.p99)
        );
    };
    row("bare Swift GET of the object (tempauth token)", swift, 1.0);
    row("ckpt GET (authorizing Swift GET + committed value from redb)", ckpt, 1.0);
    row("ckpt PUT or POST (each authorized by a Swift GET)", put_post, 1.0);
    row("ckpt PUT+POST pairs (pairs/s; latencies per request)", put_post, 2.0);
    println!();
    println!(
        "Overhead of ckpt GET over the bare Swift GET: throughput {:.2}x, p50 latency {:.2}x, \
         p99 latency {:.2}x (target: at most 1.2x).",
        swift.requests_per_second / ckpt.requests_per_second,
        ms(ckpt.p50) / ms(swift.p50),
        ms(ckpt.p99) / ms(swift.p99)
    );
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(text) => text.parse().map_err(|_| anyhow::anyhow!("{name}={text:?}: not a number")),
        Err(_) => Ok(default),
    }
}

/// PUT /ID then POST /ID, forever, on each wrk thread's one connection; ids are unique per
/// thread and per run (`-- PREFIX`). The pair advances in `response`, not `request`: wrk
/// calls `request` once more than it sends, to inspect it.
const PUT_POST_LUA: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  prefix = (args[1] or "run") .. "-" .. tostring(os.time())
  pair = 1
  posting = false
  value = "0000000000000001 0000000000000002 0000000000000003 0000000000000004\n"
end
function request()
  local path = "/" .. prefix .. "-" .. tid .. "-" .. pair
  if posting then
    return wrk.format("POST", path, nil, "")
  end
  return wrk.format("PUT", path, nil, value)
end
function response(status, headers, body)
  if status >= 300 then
    io.stderr:write("ckpt answered " .. status .. ": " .. body)
  end
  if posting then
    pair = pair + 1
  end
  posting = not posting
end
"#;
