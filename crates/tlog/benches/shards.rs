//! Reed-Solomon throughput of the Redis k+m layout, on one core:
//! `cargo bench -p strata-tlog --bench shards`.
//!
//! Splits 4 MiB envelopes into k=4 data and m=2 parity shards (the encode a flush does), and
//! rebuilds them with two shards lost (the worst read a k=4, m=2 store serves). Figures are
//! envelope bytes per second. `--test` runs a tiny version.

#![allow(clippy::print_stdout, reason = "a benchmark reports on standard output")]

use std::time::Instant;

use strata_tlog::storage::redis::shards::{join, split};

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--test");
    let envelope: Vec<u8> =
        (0..4 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let rounds = if quick { 4 } else { 400 };

    let started = Instant::now();
    let mut shards = Vec::new();
    for _ in 0..rounds {
        shards = split(std::hint::black_box(&envelope), 4, 2).map_err(anyhow::Error::msg)?;
    }
    let encode = rate(rounds, envelope.len(), started);

    let mut lost: Vec<Option<Vec<u8>>> = shards.into_iter().map(Some).collect();
    lost[0] = None;
    lost[3] = None;
    let started = Instant::now();
    for _ in 0..rounds {
        let rebuilt = join(std::hint::black_box(&lost), 4, 2).map_err(anyhow::Error::msg)?;
        anyhow::ensure!(rebuilt == envelope, "rebuilt envelope differs");
    }
    let decode = rate(rounds, envelope.len(), started);

    println!("| figure (k=4, m=2, 4 MiB envelopes, one core) | value |");
    println!("|---|---:|");
    println!("| split: length prefix, 4 data + 2 parity shards | {encode:.0} MB/s |");
    println!("| rebuild with 2 of 6 shards lost | {decode:.0} MB/s |");
    Ok(())
}

fn rate(rounds: usize, len: usize, started: Instant) -> f64 {
    (rounds * len) as f64 / started.elapsed().as_secs_f64() / 1e6
}
