//! 200 concurrent clients, on one storage URL and on many, with a checker that no GET
//! begun after a successful POST returns an older value.
//!
//! Every commit's revision comes back with its POST; the checker keeps, per URL, what each
//! acknowledged revision committed and the highest revision acknowledged so far. A GET
//! must return a revision at least as high as the highest acknowledged before it began,
//! and exactly what that revision committed (the object's own content for a deletion or
//! for revision 0). Acknowledged revisions must be 1, 2, 3, … without gaps or repeats.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use strata_ckpt::{Checkpoint, Client, Target};

use crate::util::{Running, new_object, redb_store, test_config};

const CLIENTS: usize = 200;

/// What the checker knows about one storage URL.
#[derive(Debug)]
struct History {
    target: Target,
    object: Bytes,
    /// Acknowledged revision → the committed value (`None`: a deletion).
    acked: Mutex<BTreeMap<u64, Option<Bytes>>>,
    /// The highest acknowledged revision.
    floor: AtomicU64,
    /// Every read: the floor when it began, and what it returned.
    reads: Mutex<Vec<(u64, Checkpoint)>>,
}

impl History {
    fn new(object: &[u8]) -> anyhow::Result<History> {
        Ok(History {
            target: new_object(object)?,
            object: Bytes::copy_from_slice(object),
            acked: Mutex::default(),
            floor: AtomicU64::new(0),
            reads: Mutex::default(),
        })
    }

    fn check(&self) {
        let acked = lock(&self.acked);
        let revisions: Vec<u64> = acked.keys().copied().collect();
        let expected: Vec<u64> = (1..=acked.len() as u64).collect();
        assert_eq!(revisions, expected, "acknowledged revisions have gaps");
        for (floor, read) in lock(&self.reads).iter() {
            assert!(
                read.revision >= *floor,
                "stale read: revision {} after {floor}",
                read.revision
            );
            let committed = if read.revision == 0 { &None } else { &acked[&read.revision] };
            match committed {
                Some(value) => assert!(read.committed && read.value == value, "{read:?}"),
                None => assert!(!read.committed && read.value == self.object, "{read:?}"),
            }
        }
    }
}

/// Locks `mutex`; a panic elsewhere fails the test anyway.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// One client: commit a value (every tenth deletes instead), then read.
async fn client_run(client: Client, history: Arc<History>, id: usize) -> anyhow::Result<()> {
    let value = (id % 10 != 9).then(|| Bytes::from(format!("client {id}")));
    let revision = match &value {
        Some(value) => client.put(&history.target, value.clone()).await?,
        None => client.delete(&history.target).await?,
    };
    let previous = lock(&history.acked).insert(revision, value);
    assert!(previous.is_none(), "revision {revision} acknowledged twice");
    history.floor.fetch_max(revision, Ordering::SeqCst);
    let floor = history.floor.load(Ordering::SeqCst);
    let read = client.get(&history.target).await?;
    lock(&history.reads).push((floor, read));
    Ok(())
}

async fn run_clients(urls: usize) -> anyhow::Result<()> {
    let (store, _dir) = redb_store()?;
    let server = Running::start(&test_config(), store).await?;
    let histories: Vec<Arc<History>> =
        (0..urls).map(|_| History::new(b"object").map(Arc::new)).collect::<Result<_, _>>()?;
    let mut tasks = tokio::task::JoinSet::new();
    for id in 0..CLIENTS {
        let history = histories[id % urls].clone();
        tasks.spawn(client_run(server.client.clone(), history, id));
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    for history in &histories {
        history.check();
        let total = lock(&history.acked).len() + lock(&history.reads).len();
        assert_eq!(total, 2 * CLIENTS / urls);
    }
    server.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_one_url_never_read_an_older_value() -> anyhow::Result<()> {
    run_clients(1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_on_twenty_urls_never_read_an_older_value() -> anyhow::Result<()> {
    run_clients(20).await
}
