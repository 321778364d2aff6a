//! Staged changes, their expiry, and the order the requests for one storage URL are
//! served in.
//!
//! Each storage URL with work in progress has a slot. A request takes a ticket from its
//! URL's slot when it has fully arrived; it may then wait for the object store in parallel
//! with others, but it applies its effect (read, stage, commit) only on its turn, which
//! comes when no earlier request that conflicts with it is unfinished (see `order`). A
//! ticket dropped before its turn (a client that went away) is abandoned; a turn ends when
//! it is dropped. Slots of different URLs never wait for each other. Staged changes live in
//! memory only: they are invisible until committed, so losing them in a restart is the same
//! as their expiry.
//!
//! Locks: the map of slots, then a slot's state, never the other way round; neither is held
//! across an `.await`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::order::{Access, Order};
use crate::{Error, Result, StorageUrl, TxId};

/// What each staged change is charged on top of its value, for its key and bookkeeping.
const ENTRY_OVERHEAD: usize = 128;

/// A change waiting for its POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    /// Set the checkpoint to this value.
    Put(Bytes),
    /// Forget the committed value, so GET falls back to the object's own content.
    Delete,
}

/// All slots and staged changes of one server. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Staging {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Storage URL → its slot. A slot exists while a ticket for the URL is outstanding or a
    /// change is staged for it, and is removed when neither holds.
    slots: Mutex<HashMap<StorageUrl, Arc<Slot>>>,
    /// How long a staged change waits for its POST.
    timeout: Duration,
    /// The most bytes all staged changes may hold together.
    max_bytes: usize,
    /// The bytes staged changes hold now (values plus [`ENTRY_OVERHEAD`] each).
    bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct Slot {
    state: Mutex<SlotState>,
}

#[derive(Debug, Default)]
struct SlotState {
    /// The tickets of this URL.
    order: Order,
    /// Tickets waiting for their turn, each with the sender that wakes it.
    waiters: HashMap<u64, oneshot::Sender<()>>,
    /// Staged changes by transaction id.
    staged: HashMap<TxId, Staged>,
}

/// A staged change, as taken out by a POST; [`Turn::restore`] puts it back.
#[derive(Debug)]
pub(crate) struct Staged {
    txid: TxId,
    change: Change,
    expires: Instant,
    /// What it is charged against `max_bytes`.
    size: usize,
}

/// A place in the arrival order of one storage URL; [`Ticket::turn`] waits for its turn.
#[derive(Debug)]
pub(crate) struct Ticket {
    place: Place,
}

/// A request's turn for its storage URL: no other request for the URL applies anything
/// until it is dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    place: Place,
}

/// What a ticket and a turn share; dropping it ends the turn or abandons the ticket.
#[derive(Debug)]
struct Place {
    inner: Arc<Inner>,
    url: StorageUrl,
    slot: Arc<Slot>,
    number: u64,
}

impl Staging {
    /// Staging whose changes expire after `timeout` and hold at most `max_bytes`.
    pub(crate) fn new(timeout: Duration, max_bytes: usize) -> Staging {
        let inner =
            Inner { slots: Mutex::default(), timeout, max_bytes, bytes: AtomicUsize::new(0) };
        Staging { inner: Arc::new(inner) }
    }

    /// Takes the next ticket for `url`, for a request that touches `access`.
    pub(crate) fn arrive(&self, url: &StorageUrl, access: Access) -> Ticket {
        let mut slots = lock(&self.inner.slots);
        let slot = slots.entry(url.clone()).or_default().clone();
        let number = lock(&slot.state).order.arrive(access);
        let place = Place { inner: self.inner.clone(), url: url.clone(), slot, number };
        Ticket { place }
    }

    /// Discards every change staged longer than the timeout ago and frees idle slots;
    /// returns how many changes it discarded.
    pub(crate) fn sweep(&self, now: Instant) -> usize {
        let mut slots = lock(&self.inner.slots);
        let mut discarded = 0;
        slots.retain(|_, slot| {
            let mut state = lock(&slot.state);
            let before = state.staged.len();
            let mut freed = 0;
            state.staged.retain(|_, staged| {
                let keep = staged.expires > now;
                if !keep {
                    freed += staged.size;
                }
                keep
            });
            discarded += before - state.staged.len();
            self.inner.bytes.fetch_sub(freed, Ordering::Relaxed);
            !state.is_idle()
        });
        discarded
    }

    /// The bytes staged changes hold now.
    #[cfg(test)]
    pub(crate) fn staged_bytes(&self) -> usize {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// How many storage URLs have a slot.
    #[cfg(test)]
    pub(crate) fn slots(&self) -> usize {
        lock(&self.inner.slots).len()
    }
}

impl Ticket {
    /// Waits until every earlier request for the URL that conflicts with this one has
    /// finished or gone away.
    pub(crate) async fn turn(self) -> Turn {
        let number = self.place.number;
        let wake = {
            let mut state = lock(&self.place.slot.state);
            if state.order.may_apply(number) {
                None
            } else {
                let (sender, receiver) = oneshot::channel();
                state.order.wait(number);
                state.waiters.insert(number, sender);
                Some(receiver)
            }
        };
        if let Some(receiver) = wake {
            // The sender is only ever used to say "your turn"; it is never dropped unsent
            // while this ticket waits, because only this ticket's own drop removes it.
            let _ = receiver.await;
        }
        debug_assert!(lock(&self.place.slot.state).order.may_apply(number));
        Turn { place: self.place }
    }
}

impl Turn {
    /// Stages `change` under `txid`, replacing what that id staged before and restarting
    /// its timeout. Fails when staging is full.
    pub(crate) fn stage(&self, txid: TxId, change: Change) -> Result<()> {
        let size = ENTRY_OVERHEAD
            + txid.as_str().len()
            + match &change {
                Change::Put(value) => value.len(),
                Change::Delete => 0,
            };
        let inner = &self.place.inner;
        let reserved = inner.bytes.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bytes| {
            (bytes + size <= inner.max_bytes).then_some(bytes + size)
        });
        if reserved.is_err() {
            return Err(Error::StagingFull { limit: inner.max_bytes });
        }
        let expires = Instant::now() + inner.timeout;
        let staged = Staged { txid: txid.clone(), change, expires, size };
        let replaced = lock(&self.place.slot.state).staged.insert(txid, staged);
        if let Some(old) = replaced {
            inner.bytes.fetch_sub(old.size, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Takes out the change staged under `txid`, to commit it. Fails when there is none or
    /// it has expired (an expired one is discarded).
    pub(crate) fn take(&self, txid: &TxId) -> Result<Staged> {
        let taken = lock(&self.place.slot.state).staged.remove(txid);
        let Some(staged) = taken else {
            return Err(Error::NoStagedChange {
                txid: txid.to_string(),
                reason: "no staged change with this id (never staged, expired, or committed)",
            });
        };
        self.place.inner.bytes.fetch_sub(staged.size, Ordering::Relaxed);
        if staged.expires <= Instant::now() {
            return Err(Error::NoStagedChange {
                txid: txid.to_string(),
                reason: "the staged change expired before its POST",
            });
        }
        Ok(staged)
    }

    /// Puts back a change whose commit failed, with its original expiry, so the POST can
    /// be retried. Over the byte limit it is put back all the same: it was counted before.
    pub(crate) fn restore(&self, staged: Staged) {
        self.place.inner.bytes.fetch_add(staged.size, Ordering::Relaxed);
        lock(&self.place.slot.state).staged.insert(staged.txid.clone(), staged);
    }
}

impl Staged {
    /// The change to commit.
    pub(crate) fn change(&self) -> &Change {
        &self.change
    }
}

impl SlotState {
    fn is_idle(&self) -> bool {
        self.order.is_empty() && self.staged.is_empty()
    }
}

impl Drop for Place {
    /// Ends this turn, or abandons this ticket if its turn has not come, wakes the tickets
    /// that may apply now, and frees the slot when nothing is left in it.
    fn drop(&mut self) {
        let mut slots = lock(&self.inner.slots);
        let mut state = lock(&self.slot.state);
        state.waiters.remove(&self.number);
        for ready in state.order.finish(self.number) {
            if let Some(wake) = state.waiters.remove(&ready) {
                // A failed send means that ticket is being dropped; its own drop, which
                // needs these locks, then finishes it.
                let _ = wake.send(());
            }
        }
        if state.is_idle() {
            drop(state);
            if slots.get(&self.url).is_some_and(|slot| Arc::ptr_eq(slot, &self.slot)) {
                slots.remove(&self.url);
            }
        }
    }
}

/// Locks `mutex`, going on with the data if a panicking thread poisoned it: every critical
/// section here leaves the state consistent before anything that can panic.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(name: &str) -> StorageUrl {
        StorageUrl::parse(&format!("http://store/v1/AUTH_a/c/{name}")).unwrap()
    }

    fn txid(name: &str) -> TxId {
        TxId::parse(name).unwrap()
    }

    fn commit() -> Access {
        Access::Commit(txid("c"))
    }

    #[tokio::test]
    async fn conflicting_turns_come_in_arrival_order_and_skip_abandoned_tickets() {
        let staging = Staging::new(Duration::from_secs(10), 1 << 20);
        let (first, second, third) = (
            staging.arrive(&url("o"), commit()),
            staging.arrive(&url("o"), commit()),
            staging.arrive(&url("o"), commit()),
        );
        let order = Arc::new(Mutex::new(Vec::new()));
        let log = order.clone();
        let waiting = tokio::spawn(async move {
            let _turn = third.turn().await;
            log.lock().unwrap().push(3);
        });
        tokio::task::yield_now().await;
        drop(second);
        let turn = first.turn().await;
        order.lock().unwrap().push(1);
        tokio::task::yield_now().await;
        assert_eq!(*order.lock().unwrap(), vec![1], "the third ran before the first ended");
        drop(turn);
        waiting.await.unwrap();
        assert_eq!(*order.lock().unwrap(), vec![1, 3]);
        assert_eq!(staging.slots(), 0, "an idle slot was kept");
    }

    #[tokio::test]
    async fn different_urls_do_not_wait_for_each_other() {
        let staging = Staging::new(Duration::from_secs(10), 1 << 20);
        let _held = staging.arrive(&url("a"), commit()).turn().await;
        let other = tokio::time::timeout(
            Duration::from_secs(5),
            staging.arrive(&url("b"), commit()).turn(),
        );
        assert!(other.await.is_ok());
    }

    #[tokio::test]
    async fn staged_changes_are_taken_once_expire_and_are_bounded() {
        let staging = Staging::new(Duration::from_millis(50), 1000);
        let turn = staging.arrive(&url("o"), commit()).turn().await;
        turn.stage(txid("t1"), Change::Put(Bytes::from_static(b"v1"))).unwrap();
        let taken = turn.take(&txid("t1")).unwrap();
        assert_eq!(taken.change(), &Change::Put(Bytes::from_static(b"v1")));
        assert!(matches!(turn.take(&txid("t1")), Err(Error::NoStagedChange { .. })));
        turn.stage(txid("t2"), Change::Delete).unwrap();
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(matches!(turn.take(&txid("t2")), Err(Error::NoStagedChange { .. })));
        let big = Change::Put(Bytes::from(vec![0; 900]));
        assert!(matches!(turn.stage(txid("t3"), big), Err(Error::StagingFull { .. })));
        turn.stage(txid("t4"), Change::Delete).unwrap();
        drop(turn);
        assert_eq!(staging.slots(), 1, "a slot with a staged change was freed");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(staging.sweep(Instant::now()), 1);
        assert_eq!((staging.slots(), staging.staged_bytes()), (0, 0));
    }
}
