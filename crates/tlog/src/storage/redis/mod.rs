//! Redis k+m: aggregates erasure-coded over `k + m` Redis-protocol servers.
//!
//! Each aggregate's envelope, behind its length as a little-endian u64, is cut into `k`
//! data shards and `m` Reed-Solomon parity shards; shard `i` goes to server `i` as
//! `SET <hex hash> <shard>`. Only when all `k + m` are stored does each server get
//! `LPUSH last_hash_<vdisk> <hex hash>` and `LTRIM` to the newest [`HEADS_KEPT`], and only
//! then is the append acknowledged. Reads rebuild from any `k` shards, so up to `m`
//! servers may be down or have lost their data. Servers are talked to in parallel, one
//! thread each, with retries on a fresh connection. Layout and recovery:
//! `docs/design/tlog-format.md`, "Redis k+m shards".
//!
//! This engine keeps no index: `list` walks the chain back from the head through each
//! aggregate's `prev`, fetching every aggregate, and `head` asks every server.

mod node;
pub mod shards;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use redis::Value;

use crate::aggregate::{Hash, Header, NO_PREV, Sealed, hex, name_of};
use crate::storage::redis::node::{Node, bytes};
use crate::storage::{Storage, Stored, check_vdisk_id};
use crate::{Error, Result};

/// How many recent heads each server keeps per vdisk.
pub const HEADS_KEPT: usize = 16;

/// Where a [`RedisStore`] keeps its aggregates, and how it talks to the servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// The servers, `host:port` or `host:port/db`; exactly `data_shards + parity_shards`.
    pub servers: Vec<String>,
    /// `k`: the shards an aggregate is cut into; any `k` rebuild it.
    pub data_shards: usize,
    /// `m`: the parity shards; up to `m` servers may be lost.
    pub parity_shards: usize,
    /// Connect, read and write timeout of one attempt.
    pub timeout: Duration,
    /// Attempts after the first, each on a fresh connection.
    pub retries: u32,
}

impl Default for RedisConfig {
    fn default() -> RedisConfig {
        RedisConfig {
            servers: Vec::new(),
            data_shards: 4,
            parity_shards: 2,
            timeout: Duration::from_secs(2),
            retries: 2,
        }
    }
}

impl RedisConfig {
    /// Fills `servers` up to `data_shards + parity_shards`, as the seed's pool config does:
    /// each missing server is the last one given on the next port (same host, same
    /// database). More servers than needed, or none at all, is an error.
    pub fn auto_fill(&mut self) -> Result<()> {
        let want = self.data_shards + self.parity_shards;
        let Some(last) = self.servers.last().cloned() else {
            return Err(Error::InvalidArgument(format!(
                "no redis servers given; give at least one of the {want}"
            )));
        };
        if self.servers.len() > want {
            return Err(Error::InvalidArgument(format!(
                "{} redis servers given for {} data and {} parity shards; give {want}",
                self.servers.len(),
                self.data_shards,
                self.parity_shards
            )));
        }
        let (address, db) = match last.split_once('/') {
            Some((address, db)) => (address, Some(db)),
            None => (last.as_str(), None),
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                Error::InvalidArgument(format!("redis server {last:?} is not HOST:PORT[/DB]"))
            })?;
        for step in 1..=(want - self.servers.len()) {
            let next = u16::try_from(usize::from(port) + step).map_err(|_| {
                Error::InvalidArgument(format!("cannot fill redis servers past port {port}"))
            })?;
            let db = db.map(|d| format!("/{d}")).unwrap_or_default();
            self.servers.push(format!("{host}:{next}{db}"));
        }
        Ok(())
    }

    /// Checks the shard counts against the servers.
    pub fn validate(&self) -> Result<()> {
        let (k, m) = (self.data_shards, self.parity_shards);
        if k == 0 {
            return Err(Error::InvalidArgument("data shards must be at least 1".into()));
        }
        if k + m > 32768 {
            return Err(Error::InvalidArgument(format!("{k}+{m} shards are too many")));
        }
        if self.servers.len() != k + m {
            return Err(Error::InvalidArgument(format!(
                "{} redis servers given for {k} data and {m} parity shards; give {}",
                self.servers.len(),
                k + m
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_servers_fill_consecutive_ports() {
        let mut config =
            RedisConfig { servers: vec!["10.0.0.1:6379/2".into()], ..RedisConfig::default() };
        config.auto_fill().unwrap();
        assert_eq!(config.servers.len(), 6);
        assert_eq!(config.servers[5], "10.0.0.1:6384/2");
        config.validate().unwrap();
        let mut none = RedisConfig::default();
        assert!(none.auto_fill().is_err());
        let mut bad = RedisConfig { servers: vec!["nohost".into()], ..RedisConfig::default() };
        assert!(bad.auto_fill().is_err());
        let mut many = RedisConfig { servers: vec!["h:1".into(); 7], ..RedisConfig::default() };
        assert!(many.auto_fill().is_err());
    }
}

/// Aggregates erasure-coded over `k + m` Redis-protocol servers.
#[derive(Debug)]
pub struct RedisStore {
    nodes: Vec<Node>,
    k: usize,
    m: usize,
}

impl RedisStore {
    /// Checks `config` and sets up the servers. Nothing is connected yet, so servers that
    /// are down (up to `m` of them) do not stop a reader.
    pub fn connect(config: RedisConfig) -> Result<RedisStore> {
        config.validate()?;
        let nodes = config
            .servers
            .iter()
            .map(|address| Node::new(address, config.timeout, config.retries))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(Error::InvalidArgument)?;
        Ok(RedisStore { nodes, k: config.data_shards, m: config.parity_shards })
    }

    /// Runs `f` on every server at once; the answers in server order.
    fn each<T: Send>(&self, f: impl Fn(usize, &Node) -> T + Sync) -> Vec<T> {
        std::thread::scope(|scope| {
            let f = &f;
            let handles: Vec<_> = self
                .nodes
                .iter()
                .enumerate()
                .map(|(i, node)| scope.spawn(move || f(i, node)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    /// Fetches and rebuilds the envelope `hash` of `vdisk`, checking its name.
    fn fetch(&self, vdisk: &str, hash: &Hash) -> Result<Vec<u8>> {
        self.fetch_noting_lost(vdisk, hash).map(|(envelope, _)| envelope)
    }

    /// [`RedisStore::fetch`], also naming the servers whose shard was missing, of the wrong
    /// size or damaged (by index), for [`RedisStore::repair`].
    fn fetch_noting_lost(&self, vdisk: &str, hash: &Hash) -> Result<(Vec<u8>, Vec<usize>)> {
        let key = hex(hash);
        let answers = self.each(|_, node| {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(&key);
            match node.query(&pipe)?.as_slice() {
                [Value::Nil] => Ok(None),
                [value] => bytes(value).map(Some).ok_or_else(|| node.garbage("GET")),
                _ => Err(node.garbage("GET")),
            }
        });
        let lens = answers.iter().filter_map(|a| a.as_ref().ok()?.as_ref().map(Vec::len));
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for len in lens {
            *counts.entry(len).or_default() += 1;
        }
        // The shard length most servers agree on; others count as lost.
        let len = counts.iter().max_by_key(|(len, n)| (**n, **len)).map(|(len, _)| *len);
        let mut lost = Vec::new();
        let mut missing = Vec::new();
        let mut shards = Vec::with_capacity(answers.len());
        for (i, (node, answer)) in self.nodes.iter().zip(answers).enumerate() {
            match answer {
                Ok(Some(shard)) if Some(shard.len()) == len => shards.push(Some(shard)),
                Ok(Some(shard)) => {
                    lost.push(format!("{}: shard of {} bytes", node.address, shard.len()));
                    missing.push(i);
                    shards.push(None);
                }
                Ok(None) => {
                    lost.push(format!("{}: no shard", node.address));
                    missing.push(i);
                    shards.push(None);
                }
                Err(err) => {
                    lost.push(err);
                    missing.push(i);
                    shards.push(None);
                }
            }
        }
        if shards.iter().all(Option::is_none) && lost.iter().all(|l| l.ends_with("no shard")) {
            return Err(Error::NotFound(format!("aggregate {key} of vdisk {vdisk}")));
        }
        let envelope = shards::join(&shards, self.k, self.m).map_err(|e| {
            Error::Unavailable(format!(
                "aggregate {key} of vdisk {vdisk}: {e}; lost: {}",
                lost.join(", ")
            ))
        })?;
        if name_of(&envelope).as_ref() == Some(hash) {
            return Ok((envelope, missing));
        }
        // A shard of the right length but wrong bytes: leave each out in turn.
        for i in 0..shards.len() {
            if let Some(envelope) = self.rebuild_without(&shards, i, hash) {
                tracing::warn!(
                    "aggregate {key} of vdisk {vdisk}: shard {i} on {} is damaged",
                    self.nodes[i].address
                );
                missing.push(i);
                return Ok((envelope, missing));
            }
        }
        Err(Error::Corrupted(format!(
            "aggregate {key} of vdisk {vdisk}: rebuilt bytes do not match the name; \
             lost: {}",
            if lost.is_empty() { "none".to_string() } else { lost.join(", ") }
        )))
    }

    /// The envelope rebuilt without shard `skip`, if that matches `hash`.
    fn rebuild_without(
        &self,
        shards: &[Option<Vec<u8>>],
        skip: usize,
        hash: &Hash,
    ) -> Option<Vec<u8>> {
        shards.get(skip)?.as_ref()?;
        let mut fewer = shards.to_vec();
        fewer[skip] = None;
        let envelope = shards::join(&fewer, self.k, self.m).ok()?;
        (name_of(&envelope).as_ref() == Some(hash)).then_some(envelope)
    }

    /// The aggregate `hash` of `vdisk` as listed.
    fn stored(&self, vdisk: &str, hash: &Hash) -> Result<Stored> {
        let envelope = self.fetch(vdisk, hash)?;
        let header = Header::decode(&envelope).map_err(|e| {
            Error::Corrupted(format!("aggregate {} of vdisk {vdisk}: {e}", hex(hash)))
        })?;
        Ok(Stored { hash: *hash, header, len: envelope.len() as u64 })
    }

    /// Each server's list of recent heads of `vdisk`, newest first.
    fn head_lists(&self, vdisk: &str) -> Vec<std::result::Result<Vec<Hash>, String>> {
        let key = heads_key(vdisk);
        self.each(|_, node| {
            let mut pipe = redis::pipe();
            pipe.cmd("LRANGE").arg(&key).arg(0).arg(-1);
            let reply = node.query(&pipe)?;
            let [Value::Array(items)] = reply.as_slice() else {
                return Err(node.garbage("LRANGE"));
            };
            // Entries that are not hex hashes are skipped, as heads that do not decode are.
            Ok(items.iter().filter_map(|item| parse_hash(&bytes(item)?)).collect())
        })
    }
}

/// What [`RedisStore::repair`] found and rewrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Repaired {
    /// The vdisks walked.
    pub vdisks: usize,
    /// The aggregates checked (every one on each vdisk's chain).
    pub aggregates: usize,
    /// Shards rewritten, per server (in configuration order).
    pub shards: Vec<(String, usize)>,
    /// Head lists rewritten, per server (in configuration order).
    pub head_lists: Vec<(String, usize)>,
}

impl Repaired {
    /// Shards rewritten on all servers together.
    pub fn shards_rewritten(&self) -> usize {
        self.shards.iter().map(|(_, n)| n).sum()
    }
}

impl RedisStore {
    /// Rebuilds what servers lost: walks the chain of `vdisk` (of every vdisk when `None`),
    /// rebuilds each aggregate from the shards that remain, rewrites the missing or damaged
    /// shards, and gives servers whose head list of a vdisk is missing or behind the
    /// newest heads again. Needs every server up, so that afterwards any `m` may be lost
    /// again; a chain that cannot be rebuilt (more than `m` lost) stops it with that
    /// aggregate's error.
    pub fn repair(&self, vdisk: Option<&str>) -> Result<Repaired> {
        let down: Vec<String> = self
            .each(|_, node| {
                let mut pipe = redis::pipe();
                pipe.cmd("PING");
                match node.query(&pipe)?.as_slice() {
                    [Value::SimpleString(pong)] if pong == "PONG" => Ok(()),
                    _ => Err(node.garbage("PING")),
                }
            })
            .into_iter()
            .filter_map(std::result::Result::err)
            .collect();
        if !down.is_empty() {
            return Err(Error::Unavailable(format!(
                "repair needs every redis server up; start them first: {}",
                down.join("; ")
            )));
        }
        let vdisks = match vdisk {
            Some(vdisk) => {
                check_vdisk_id(vdisk).map_err(Error::InvalidArgument)?;
                vec![vdisk.to_string()]
            }
            None => self.vdisks()?,
        };
        let mut shards = vec![0usize; self.nodes.len()];
        let mut lists = vec![0usize; self.nodes.len()];
        let mut aggregates = 0;
        for vdisk in &vdisks {
            let chain = self.list(vdisk)?;
            for stored in &chain {
                let (envelope, missing) = self.fetch_noting_lost(vdisk, &stored.hash)?;
                aggregates += 1;
                if missing.is_empty() {
                    continue;
                }
                let key = hex(&stored.hash);
                let all = shards::split(&envelope, self.k, self.m)
                    .map_err(|e| Error::Unavailable(format!("aggregate {key}: {e}")))?;
                for i in missing {
                    let node = &self.nodes[i];
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET").arg(&key).arg(&all[i]);
                    match node.query(&pipe).map_err(Error::Unavailable)?.as_slice() {
                        [Value::Okay] => shards[i] += 1,
                        _ => return Err(Error::Unavailable(node.garbage("SET"))),
                    }
                    tracing::info!(vdisk, aggregate = %key, server = %node.address, "shard rewritten");
                }
            }
            // The newest names, newest first, as every server's list should start.
            let newest: Vec<String> =
                chain.iter().rev().take(HEADS_KEPT).map(|s| hex(&s.hash)).collect();
            let Some(head) = newest.first() else { continue };
            let heads = heads_key(vdisk);
            for (i, list) in self.head_lists(vdisk).into_iter().enumerate() {
                let list = list.map_err(Error::Unavailable)?;
                if list.first().map(|h| hex(h)).as_ref() == Some(head) {
                    continue;
                }
                // Rewrite the list oldest first, so LPUSH leaves the head in front.
                let node = &self.nodes[i];
                let mut pipe = redis::pipe();
                pipe.cmd("DEL").arg(&heads).ignore();
                for name in newest.iter().rev() {
                    pipe.cmd("LPUSH").arg(&heads).arg(name).ignore();
                }
                pipe.cmd("LLEN").arg(&heads);
                match node.query(&pipe).map_err(Error::Unavailable)?.as_slice() {
                    [Value::Int(n)] if usize::try_from(*n) == Ok(newest.len()) => lists[i] += 1,
                    _ => return Err(Error::Unavailable(node.garbage("LPUSH"))),
                }
                tracing::info!(vdisk, server = %node.address, "head list rewritten");
            }
        }
        let named = |counts: Vec<usize>| {
            self.nodes.iter().map(|n| n.address.clone()).zip(counts).collect::<Vec<_>>()
        };
        Ok(Repaired {
            vdisks: vdisks.len(),
            aggregates,
            shards: named(shards),
            head_lists: named(lists),
        })
    }
}

impl Storage for RedisStore {
    fn append(&self, vdisk: &str, sealed: &Sealed) -> Result<()> {
        check_vdisk_id(vdisk).map_err(Error::InvalidArgument)?;
        let key = hex(sealed.hash());
        let shards = shards::split(sealed.bytes(), self.k, self.m)
            .map_err(|e| Error::Unavailable(format!("aggregate {key}: {e}")))?;
        let stored = self.each(|i, node| {
            let mut pipe = redis::pipe();
            pipe.cmd("SET").arg(&key).arg(&shards[i]);
            match node.query(&pipe)?.as_slice() {
                [Value::Okay] => Ok(()),
                _ => Err(node.garbage("SET")),
            }
        });
        let failed = failures(stored);
        if !failed.is_empty() {
            return Err(Error::Unavailable(format!(
                "aggregate {key} of vdisk {vdisk} not stored: {}",
                failed.join("; ")
            )));
        }
        // The head moves only where it is still `prev` (fencing): a writer that read the head
        // before another appended gets StaleHead, never a head of its own.
        let prev = Header::decode(sealed.bytes())
            .map(|h| hex(&h.prev))
            .map_err(|e| Error::InvalidArgument(format!("not an aggregate envelope: {e}")))?;
        let heads = heads_key(vdisk);
        let pushed = self.each(|_, node| {
            let mut pipe = redis::pipe();
            pipe.cmd("EVAL")
                .arg(PUSH_IF_HEAD)
                .arg(1)
                .arg(&heads)
                .arg(&prev)
                .arg(&key)
                .arg(HEADS_KEPT - 1);
            match node.query(&pipe)?.as_slice() {
                [Value::Int(1)] => Ok(true),
                [Value::Int(0)] => Ok(false),
                _ => Err(node.garbage("EVAL")),
            }
        });
        let stale: Vec<&str> = pushed
            .iter()
            .zip(&self.nodes)
            .filter(|(answer, _)| matches!(answer, Ok(false)))
            .map(|(_, node)| node.address.as_str())
            .collect();
        if !stale.is_empty() {
            tracing::error!(
                vdisk,
                aggregate = %key,
                prev = %prev,
                servers = ?stale,
                "a stale writer tried to move the head; refused"
            );
            return Err(Error::StaleHead(format!(
                "aggregate {key} of vdisk {vdisk} chains to {prev}, but the head on {} is \
                 another: a newer writer took over this vdisk",
                stale.join(", ")
            )));
        }
        let failed = failures(pushed.into_iter().map(|r| r.map(drop)).collect());
        if !failed.is_empty() {
            return Err(Error::Unavailable(format!(
                "aggregate {key} of vdisk {vdisk} stored but not made head: {}",
                failed.join("; ")
            )));
        }
        Ok(())
    }

    fn head(&self, vdisk: &str) -> Result<Option<Stored>> {
        check_vdisk_id(vdisk).map_err(Error::InvalidArgument)?;
        let lists = self.head_lists(vdisk);
        let (mut best, mut errors): (Option<Stored>, Vec<String>) = (None, Vec::new());
        let mut tried: HashMap<Hash, Option<Stored>> = HashMap::new();
        let answered = lists.iter().filter(|l| l.is_ok()).count();
        for list in lists {
            let list = match list {
                Ok(list) => list,
                Err(err) => {
                    errors.push(err);
                    continue;
                }
            };
            // This server's newest head that decodes. Falling back to an older head is right
            // only when the newer one is proven damaged or gone; one that cannot be read
            // now (servers timing out or restarting) makes the whole answer "unavailable",
            // since a guessed older head would fork the chain and drop acknowledged data.
            for hash in list {
                let found = match tried.get(&hash) {
                    Some(found) => *found,
                    None => {
                        let found = match self.stored(vdisk, &hash) {
                            Ok(stored) => Some(stored),
                            Err(err @ (Error::Corrupted(_) | Error::NotFound(_))) => {
                                tracing::error!(
                                    vdisk,
                                    head = %hex(&hash),
                                    error = %err,
                                    "a recent head of the log is damaged or gone; falling back \
                                     to an older one (run `strata tlog repair`)"
                                );
                                errors.push(err.to_string());
                                None
                            }
                            Err(err) => {
                                return Err(Error::Unavailable(format!(
                                    "head of vdisk {vdisk}: aggregate {} cannot be read now: \
                                     {err}; retry once the redis servers answer",
                                    hex(&hash)
                                )));
                            }
                        };
                        tried.insert(hash, found);
                        found
                    }
                };
                if let Some(stored) = found {
                    if best.is_none_or(|b| stored.header.last_sequence > b.header.last_sequence) {
                        best = Some(stored);
                    }
                    break;
                }
            }
        }
        if answered < self.k {
            return Err(Error::Unavailable(format!(
                "head of vdisk {vdisk}: only {answered} of {} redis servers answered: {}",
                self.nodes.len(),
                errors.join("; ")
            )));
        }
        if best.is_none() && !tried.is_empty() {
            return Err(Error::Corrupted(format!(
                "head of vdisk {vdisk}: no recent head decodes: {}",
                errors.join("; ")
            )));
        }
        Ok(best)
    }

    fn get(&self, vdisk: &str, hash: &Hash) -> Result<Vec<u8>> {
        check_vdisk_id(vdisk).map_err(Error::InvalidArgument)?;
        self.fetch(vdisk, hash)
    }

    fn list(&self, vdisk: &str) -> Result<Vec<Stored>> {
        let Some(head) = self.head(vdisk)? else { return Ok(Vec::new()) };
        let mut chain = vec![head];
        let mut seen = BTreeSet::from([head.hash]);
        let mut prev = head.header.prev;
        while prev != NO_PREV {
            if !seen.insert(prev) {
                return Err(Error::Corrupted(format!(
                    "vdisk {vdisk}: the chain loops at aggregate {}",
                    hex(&prev)
                )));
            }
            let stored = self.stored(vdisk, &prev)?;
            prev = stored.header.prev;
            chain.push(stored);
        }
        chain.reverse();
        Ok(chain)
    }

    fn vdisks(&self) -> Result<Vec<String>> {
        let scans = self.each(|_, node| node.scan(&format!("{HEADS_PREFIX}*")));
        let mut vdisks = BTreeSet::new();
        let mut errors = Vec::new();
        for scan in scans {
            match scan {
                Ok(keys) => vdisks.extend(keys.iter().filter_map(|key| {
                    let id = std::str::from_utf8(key).ok()?.strip_prefix(HEADS_PREFIX)?;
                    check_vdisk_id(id).ok().map(|()| id.to_string())
                })),
                Err(err) => errors.push(err),
            }
        }
        if errors.len() > self.m {
            return Err(Error::Unavailable(format!("listing vdisks: {}", errors.join("; "))));
        }
        Ok(vdisks.into_iter().collect())
    }
}

/// The prefix of the per-vdisk lists of recent heads.
const HEADS_PREFIX: &str = "last_hash_";

/// Pushes `ARGV[2]` on the head list `KEYS[1]` (trimmed to `ARGV[3]` + 1 entries) only when
/// the list's newest entry is `ARGV[1]`, the aggregate's prev, or the list is empty (a
/// server that lost its list cannot fence, the others do). 1 when pushed, 0 when stale.
const PUSH_IF_HEAD: &str = "\
local head = redis.call('LINDEX', KEYS[1], 0)
if head and head ~= ARGV[1] then return 0 end
redis.call('LPUSH', KEYS[1], ARGV[2])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[3]))
return 1";

fn heads_key(vdisk: &str) -> String {
    format!("{HEADS_PREFIX}{vdisk}")
}

fn failures(results: Vec<std::result::Result<(), String>>) -> Vec<String> {
    results.into_iter().filter_map(std::result::Result::err).collect()
}

fn parse_hash(text: &[u8]) -> Option<Hash> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).ok()?;
    Some(hash)
}
