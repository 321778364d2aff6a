//! Push and pull of a volume set with 10,000 snapshots on 100 branches through a real hub
//! server on loopback: metadata only, then with 1 GiB of blob data; and incremental sync
//! of one new snapshot on that set.
//!
//! `cargo bench -p strata-hub --bench hub` (sizes: STRATA_BENCH_SNAPSHOTS, STRATA_BENCH_BRANCHES,
//! STRATA_BENCH_BLOB_BYTES; STRATA_BENCH_PROFILE=1 prints where a sync's time goes). Prints a
//! Markdown table.

use std::io::Write as _;
use std::time::{Duration, Instant};

use strata_hub::model::new_id;
use strata_hub::tokens::{Tokens, create_token};
use strata_hub::{
    Branch, Client, Hub, HubServerConfig, HubService, Local, NewSnapshot, NoProgress, Server,
    Snapshot,
};
use strata_kv::Store;
use strata_volume::BlobStore;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn local(dir: &std::path::Path, name: &str) -> anyhow::Result<Local> {
    Ok(Local {
        hub: Hub::new(Store::redb(&dir.join(format!("{name}.redb")))?, ""),
        blobs: BlobStore::open(&dir.join(format!("{name}-blobs")))?,
    })
}

/// A volume set of `count` snapshots on `branches` branches (each forked off the first
/// snapshot), each snapshot with a blob of `blob_bytes` random bytes when non-zero.
fn build(l: &Local, count: u64, branches: u64, blob_bytes: u64) -> anyhow::Result<String> {
    let vs = l.hub.create_volset(&format!("bench-{}", &new_id()[..8]), "", "bench")?;
    let per = count / branches;
    let mut snaps: Vec<Snapshot> = Vec::new();
    let mut tips: Vec<Branch> = Vec::new();
    let mut buf = vec![0u8; blob_bytes as usize];
    let mut root: Option<String> = None;
    for b in 0..branches {
        let mut parent: Option<Snapshot> = if b == 0 { None } else { snaps.first().cloned() };
        for i in 0..per {
            let blob_id = if blob_bytes > 0 {
                fastrand::fill(&mut buf);
                let mut w = l.blobs.writer()?;
                w.write_all(&buf)?;
                Some(w.finish()?.to_string())
            } else {
                None
            };
            let snap = Snapshot {
                id: new_id(),
                parent_id: parent.as_ref().map(|p| p.id.clone()),
                volset_id: vs.id.clone(),
                name: format!("b{b}-s{i}"),
                description: String::new(),
                attrs: Default::default(),
                size: blob_bytes,
                creator: "bench".into(),
                owner: "bench".into(),
                created_at: strata_hub::model::now(),
                updated_at: 0,
                blob_id,
                prev_blob_id: parent.as_ref().and_then(|p| p.blob_id.clone()),
                depth: parent.as_ref().map_or(1, |p| p.depth + 1),
            };
            root.get_or_insert_with(|| snap.id.clone());
            snaps.push(snap.clone());
            parent = Some(snap);
        }
        if let Some(tip) = parent {
            tips.push(Branch {
                id: new_id(),
                volset_id: vs.id.clone(),
                name: format!("branch-{b}"),
                tip: tip.id,
                attrs: Default::default(),
            });
        }
    }
    snaps.sort_by_key(|s| s.depth);
    l.hub.import_snapshots(&vs.id, &snaps, None)?;
    for b in &tips {
        l.hub.import_branch(b)?;
    }
    Ok(vs.id)
}

/// A table row for a transfer of `(snapshots, blobs)` and `bytes` that took `el`.
fn blob_row(what: &str, (snaps, blobs): (usize, usize), bytes: u64, el: Duration) -> String {
    let mb = bytes as f64 / 1e6;
    let rate = mb / el.as_secs_f64();
    format!(
        "| {what} | {snaps} snapshots, {blobs} blobs, {mb:.0} MB | {} | {rate:.0} MB/s |",
        secs(el)
    )
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    let count = env("STRATA_BENCH_SNAPSHOTS", 10_000);
    let branches = env("STRATA_BENCH_BRANCHES", 100);
    let total_blob = env("STRATA_BENCH_BLOB_BYTES", 1 << 30);
    let dir =
        tempfile::tempdir_in(std::env::var("STRATA_BENCH_DIR").unwrap_or_else(|_| "/tmp".into()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let service = HubService::new(
        Hub::new(Store::redb(&dir.path().join("hub.redb"))?, ""),
        BlobStore::open(&dir.path().join("hub-blobs"))?,
    );
    let token = create_token(dir.path(), "bench")?;
    let config = HubServerConfig { listen: "127.0.0.1:0".into(), ..HubServerConfig::default() };
    let server = runtime.block_on(Server::bind(config, service, Tokens::open(dir.path())))?;
    let url = format!("http://{}", server.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let done = runtime.spawn(server.run(async move {
        let _ = stopped.await;
    }));
    let client = Client::new(&url, &token)?;
    let mut rows = Vec::new();

    // Metadata only.
    let a = local(dir.path(), "a")?;
    let vsid = build(&a, count, branches, 0)?;
    let t = Instant::now();
    let pushed = runtime.block_on(a.push(&client, &vsid, &NoProgress))?;
    rows.push(format!(
        "| push, metadata only | {} snapshots | {} | |",
        pushed.snapshots_pushed,
        secs(t.elapsed())
    ));
    let b = local(dir.path(), "b")?;
    let t = Instant::now();
    let pulled = runtime.block_on(b.pull(&client, &vsid, &NoProgress))?;
    rows.push(format!(
        "| pull onto an empty store, metadata only | {} snapshots | {} | |",
        pulled.snapshots_pulled,
        secs(t.elapsed())
    ));

    if std::env::var("STRATA_BENCH_PROFILE").is_ok() {
        use strata_hub::Remote as _;
        let t = Instant::now();
        let e = runtime.block_on(client.export(&vsid))?;
        eprintln!("export over http: {:?} ({} snapshots)", t.elapsed(), e.snapshots.len());
        let t = Instant::now();
        let s = a.hub.snapshots(&vsid, &strata_hub::Query::default())?;
        eprintln!("local snapshots scan: {:?} ({})", t.elapsed(), s.len());
        let t = Instant::now();
        let i = a.hub.inits::<strata_hub::SnapshotMeta>("snap")?;
        eprintln!("local inits scan: {:?} ({})", t.elapsed(), i.len());
        // One new snapshot on a branch of `a`.
        let probe = || -> anyhow::Result<()> {
            let tip = a.hub.find_branch(&vsid, "branch-9")?.tip;
            let new = NewSnapshot { name: "probe".into(), ..NewSnapshot::default() };
            a.hub.extend(&vsid, &tip, &new)?;
            Ok(())
        };
        for _ in 0..3 {
            probe()?;
            let t = Instant::now();
            runtime.block_on(a.pull(&client, &vsid, &NoProgress))?;
            let pull = t.elapsed();
            let t = Instant::now();
            runtime.block_on(a.push(&client, &vsid, &NoProgress))?;
            eprintln!("pull alone {pull:?}, push alone {:?}", t.elapsed());
            let t = Instant::now();
            runtime.block_on(client.find_volset(&vsid))?;
            eprintln!("find_volset {:?}", t.elapsed());
        }
        // What an incremental sync reads instead, after one new snapshot.
        runtime.block_on(a.sync(&client, &vsid, &NoProgress))?;
        let mark = a.hub.sync_mark(&vsid)?.ok_or_else(|| anyhow::anyhow!("no sync mark"))?;
        probe()?;
        let t = Instant::now();
        let e = runtime.block_on(client.export_since(&vsid, &mark.remote))?;
        eprintln!(
            "export since the last sync: {:?} ({} snapshots)",
            t.elapsed(),
            e.snapshots.len()
        );
        let t = Instant::now();
        let c = a.hub.changes(&vsid, &mark.local)?.map_or(0, |c| c.changed.len());
        eprintln!("local changes since the last sync: {:?} ({c})", t.elapsed());
        let t = Instant::now();
        runtime.block_on(a.sync(&client, &vsid, &NoProgress))?;
        eprintln!("incremental sync: {:?}", t.elapsed());
        let t = Instant::now();
        let x = a.hub.export(&vsid)?;
        eprintln!("local export: {:?} ({})", t.elapsed(), x.snapshots.len());
        let t = Instant::now();
        let bytes = serde_json::to_vec(&x)?;
        eprintln!("encode: {:?} ({} bytes)", t.elapsed(), bytes.len());
        let t = Instant::now();
        let _: strata_hub::sync::Export = serde_json::from_slice(&bytes)?;
        eprintln!("decode: {:?}", t.elapsed());
    }

    // The first sync after a push reads both sides whole (no revisions remembered yet); the
    // ones after it read only what changed since the last.
    if a.hub.sync_mark(&vsid)?.is_none() {
        let tip = a.hub.find_branch(&vsid, "branch-7")?.tip;
        let first = NewSnapshot { name: "first".into(), ..NewSnapshot::default() };
        a.hub.extend(&vsid, &tip, &first)?;
        let t = Instant::now();
        runtime.block_on(a.sync(&client, &vsid, &NoProgress))?;
        rows.push(format!(
            "| first sync after the push, reading everything | 1 snapshot | {:.0} ms | |",
            t.elapsed().as_secs_f64() * 1e3
        ));
    }

    // Incremental sync of one new snapshot.
    let mut times = Vec::new();
    for i in 0..7 {
        let tip = a.hub.find_branch(&vsid, "branch-7")?.tip;
        a.hub.extend(
            &vsid,
            &tip,
            &NewSnapshot { name: format!("new-{i}"), ..NewSnapshot::default() },
        )?;
        let t = Instant::now();
        let r = runtime.block_on(a.sync(&client, &vsid, &NoProgress))?;
        times.push(t.elapsed());
        assert_eq!(r.snapshots_pushed, 1);
    }
    times.sort();
    rows.push(format!(
        "| sync of one new snapshot (median of {}; min {:.0} ms, max {:.0} ms) | 1 snapshot | {:.0} ms | |",
        times.len(),
        times[0].as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times[times.len() / 2].as_secs_f64() * 1e3
    ));

    // With blob data.
    if total_blob > 0 {
        let per_blob = total_blob / count;
        let c = local(dir.path(), "c")?;
        let t = Instant::now();
        let vsid = build(&c, count, branches, per_blob)?;
        eprintln!("built {count} snapshots with {per_blob}-byte blobs in {}", secs(t.elapsed()));
        let t = Instant::now();
        let pushed = runtime.block_on(c.push(&client, &vsid, &NoProgress))?;
        let (moved, el) = ((pushed.snapshots_pushed, pushed.blobs_pushed), t.elapsed());
        rows.push(blob_row("push with blobs", moved, pushed.bytes, el));
        let d = local(dir.path(), "d")?;
        let t = Instant::now();
        let pulled = runtime.block_on(d.pull(&client, &vsid, &NoProgress))?;
        let (moved, el) = ((pulled.snapshots_pulled, pulled.blobs_pulled), t.elapsed());
        rows.push(blob_row("pull with blobs onto an empty store", moved, pulled.bytes, el));
    }
    let _ = stop.send(());
    let _ = runtime.block_on(done);
    let mut out = std::io::stdout().lock();
    writeln!(out, "| operation | size | time | throughput |\n|---|---|---:|---:|")?;
    for row in rows {
        writeln!(out, "{row}")?;
    }
    Ok(())
}
