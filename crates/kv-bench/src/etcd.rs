//! The etcd engine's figures: strata-kv transactions per second against one local etcd with
//! 1 and 32 concurrent clients, and plain etcd-client puts (and, to tell strata-kv's cost
//! from etcd's, plain etcd-client `Txn`s) in the same run for comparison.
//!
//! "Clients" are concurrent callers sharing one connection: threads sharing one
//! [`Store`] for strata-kv, tasks sharing one [`etcd_client::KvClient`] for plain puts.
//! Both run their gRPC client on a two-worker tokio runtime.

use std::time::{Duration, Instant};

use anyhow::Context;
use etcd_client::{Client, KvClient, Txn, TxnOp};
use strata_kv::{EtcdConfig, Read, Store};
use strata_kv_bench::measure::{Summary, VALUE, key, warm_then_run};
use strata_testkit::Etcd;

/// What one etcd row measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `KvClient::put`, one request per put.
    ClientPut,
    /// `KvClient::txn` with no compares and one put: what a strata-kv 1-put transaction sends.
    ClientTxn,
    /// A strata-kv transaction that puts one key: one etcd `Txn` with no compares.
    StrataPut,
    /// A strata-kv transaction that reads a key and puts it back: a range request, then one
    /// etcd `Txn` comparing the key's revision.
    StrataGetPut,
}

/// One etcd figure.
#[derive(Debug, Clone, Copy)]
pub struct EtcdRow {
    /// What was measured.
    pub workload: Workload,
    /// Concurrent callers.
    pub clients: u32,
    /// How it went.
    pub summary: Summary,
}

impl Workload {
    /// Every workload, in the order the report lists them.
    pub const ALL: [Workload; 4] =
        [Workload::ClientPut, Workload::ClientTxn, Workload::StrataPut, Workload::StrataGetPut];
}

/// Starts a local etcd and measures every workload with 1 and 32 clients, `duration` each.
pub fn measure(duration: Duration) -> anyhow::Result<Vec<EtcdRow>> {
    let etcd = Etcd::start().context("start etcd")?;
    let endpoint = etcd.endpoint();
    let config = EtcdConfig {
        endpoints: vec![endpoint.clone()],
        prefix: "bench/strata/".into(),
        ..EtcdConfig::default()
    };
    let store = Store::etcd(&config)?;
    let plain = Plain::connect(&endpoint)?;
    let mut rows = Vec::new();
    for clients in [1, 32] {
        for workload in Workload::ALL {
            let summary = match workload {
                Workload::ClientPut | Workload::ClientTxn => {
                    plain.run(workload, clients, duration)?
                }
                Workload::StrataPut => {
                    warm_then_run(clients, duration, |t, n| txn_put(&store, t, n))?
                }
                Workload::StrataGetPut => {
                    warm_then_run(clients, duration, |t, n| txn_get_put(&store, t, n))?
                }
            };
            rows.push(EtcdRow { workload, clients, summary });
        }
    }
    Ok(rows)
}

fn txn_put(store: &Store, thread: u32, n: u64) -> anyhow::Result<()> {
    let mut txn = store.write()?;
    txn.put(&key(thread, n), &VALUE);
    txn.commit()?;
    Ok(())
}

fn txn_get_put(store: &Store, thread: u32, n: u64) -> anyhow::Result<()> {
    // Each client reads and rewrites a few keys of its own, so transactions never conflict.
    let key = key(thread | 1 << 30, n % 8);
    let mut txn = store.write()?;
    let mut value = txn.get(&key)?.unwrap_or_else(|| VALUE.to_vec());
    value[0] = value[0].wrapping_add(1);
    txn.put(&key, &value);
    txn.commit()?;
    Ok(())
}

/// Plain etcd-client requests, the peers of the strata-kv transactions.
struct Plain {
    runtime: tokio::runtime::Runtime,
    client: KvClient,
}

impl Plain {
    fn connect(endpoint: &str) -> anyhow::Result<Plain> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("start a tokio runtime")?;
        let client = runtime
            .block_on(Client::connect([endpoint], None))
            .with_context(|| format!("connect to etcd at {endpoint}"))?
            .kv_client();
        Ok(Plain { runtime, client })
    }

    /// Runs `workload` from `clients` tasks at once: a short unmeasured warm-up, then
    /// `duration`.
    fn run(&self, workload: Workload, clients: u32, duration: Duration) -> anyhow::Result<Summary> {
        let warmup = (duration / 10).min(Duration::from_millis(300));
        self.runtime.block_on(self.requests(workload, clients, warmup, 1 << 31))?;
        let started = Instant::now();
        let latencies = self.runtime.block_on(self.requests(workload, clients, duration, 0))?;
        Ok(Summary::from_latencies(latencies, started.elapsed()))
    }

    async fn requests(
        &self,
        workload: Workload,
        clients: u32,
        duration: Duration,
        first: u32,
    ) -> anyhow::Result<Vec<Duration>> {
        let deadline = Instant::now() + duration;
        let txn = workload == Workload::ClientTxn;
        let tasks: Vec<_> = (0..clients)
            .map(|t| tokio::spawn(request_loop(self.client.clone(), txn, first + t, deadline)))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        Ok(latencies)
    }
}

/// Puts, or with `txn` one-put `Txn`s, one after the other until `deadline`.
async fn request_loop(
    mut client: KvClient,
    txn: bool,
    thread: u32,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let mut latencies = Vec::new();
    let mut n = 0;
    while Instant::now() < deadline {
        let mut full = b"bench/plain/".to_vec();
        full.extend_from_slice(&key(thread, n));
        let began = Instant::now();
        if txn {
            client.txn(Txn::new().and_then([TxnOp::put(full, VALUE.to_vec(), None)])).await?;
        } else {
            client.put(full, VALUE.to_vec(), None).await?;
        }
        latencies.push(began.elapsed());
        n += 1;
    }
    Ok(latencies)
}
