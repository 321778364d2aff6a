//! The arrival order of the requests for one storage URL, as a pure state machine.
//!
//! Every request takes a ticket in arrival order, saying what it touches ([`Access`]). A
//! ticket may apply its effect once no earlier, unfinished ticket conflicts with it: two
//! requests conflict when they touch the same thing and at least one changes it. So the
//! outcome is exactly that of serving the requests one at a time in arrival order, while
//! requests that cannot affect each other (two GETs; stagings under different transaction
//! ids) overlap. No I/O and no waiting here: `staging` wakes the tickets this module names.

use std::collections::{BTreeMap, BTreeSet};

use crate::TxId;

/// What a request touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Access {
    /// GET: reads the committed value.
    Read,
    /// PUT or DELETE: replaces the change staged under the id.
    Stage(TxId),
    /// POST: takes the change staged under the id and replaces the committed value.
    Commit(TxId),
}

/// Tickets of one storage URL.
#[derive(Debug, Default)]
pub(crate) struct Order {
    /// The number the next ticket gets.
    next: u64,
    /// Tickets not yet finished (nor abandoned), by number.
    outstanding: BTreeMap<u64, Access>,
    /// Outstanding tickets that found they may not apply yet and wait to be named by
    /// [`Order::finish`].
    waiting: BTreeSet<u64>,
}

impl Access {
    /// True when serving `self` and `other` in either order could give different results.
    pub(crate) fn conflicts(&self, other: &Access) -> bool {
        match (self, other) {
            (Access::Read, Access::Read) => false,
            (Access::Read, Access::Stage(_)) | (Access::Stage(_), Access::Read) => false,
            (Access::Read, Access::Commit(_)) | (Access::Commit(_), Access::Read) => true,
            (Access::Commit(_), Access::Commit(_)) => true,
            (Access::Stage(a) | Access::Commit(a), Access::Stage(b) | Access::Commit(b)) => a == b,
        }
    }
}

impl Order {
    /// A new ticket for a request that touches `access`.
    pub(crate) fn arrive(&mut self, access: Access) -> u64 {
        let number = self.next;
        self.next += 1;
        self.outstanding.insert(number, access);
        number
    }

    /// True when no earlier outstanding ticket conflicts with ticket `number`. Once true it
    /// stays true: later tickets never hold an earlier one back.
    pub(crate) fn may_apply(&self, number: u64) -> bool {
        let Some(access) = self.outstanding.get(&number) else { return false };
        self.outstanding.range(..number).all(|(_, earlier)| !earlier.conflicts(access))
    }

    /// Records that ticket `number` waits for [`Order::finish`] to name it.
    pub(crate) fn wait(&mut self, number: u64) {
        debug_assert!(self.outstanding.contains_key(&number));
        self.waiting.insert(number);
    }

    /// Ends ticket `number`, applied or abandoned, and returns the waiting tickets that may
    /// apply now; they no longer count as waiting.
    pub(crate) fn finish(&mut self, number: u64) -> Vec<u64> {
        self.outstanding.remove(&number);
        self.waiting.remove(&number);
        let ready: Vec<u64> = self.waiting.iter().copied().filter(|&n| self.may_apply(n)).collect();
        for number in &ready {
            self.waiting.remove(number);
        }
        ready
    }

    /// True when no ticket is outstanding.
    pub(crate) fn is_empty(&self) -> bool {
        self.outstanding.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(name: &str) -> TxId {
        TxId::parse(name).unwrap()
    }

    #[test]
    fn conflicts_are_those_of_shared_state_with_a_writer() {
        let (read, stage_a, stage_b) =
            (Access::Read, Access::Stage(tx("a")), Access::Stage(tx("b")));
        let (commit_a, commit_b) = (Access::Commit(tx("a")), Access::Commit(tx("b")));
        assert!(!read.conflicts(&read));
        assert!(!read.conflicts(&stage_a) && !stage_a.conflicts(&read));
        assert!(read.conflicts(&commit_a) && commit_a.conflicts(&read));
        assert!(stage_a.conflicts(&stage_a) && !stage_a.conflicts(&stage_b));
        assert!(stage_a.conflicts(&commit_a) && commit_a.conflicts(&stage_a));
        assert!(!stage_a.conflicts(&commit_b));
        assert!(commit_a.conflicts(&commit_b));
    }

    #[test]
    fn reads_overlap_until_a_commit_and_a_commit_waits_for_all_before_it() {
        let mut order = Order::default();
        let read1 = order.arrive(Access::Read);
        let read2 = order.arrive(Access::Read);
        let commit = order.arrive(Access::Commit(tx("a")));
        let read3 = order.arrive(Access::Read);
        let stage_b = order.arrive(Access::Stage(tx("b")));
        assert!(order.may_apply(read1) && order.may_apply(read2) && order.may_apply(stage_b));
        assert!(!order.may_apply(commit) && !order.may_apply(read3));
        order.wait(commit);
        order.wait(read3);
        assert_eq!(order.finish(read2), Vec::<u64>::new());
        assert_eq!(order.finish(read1), vec![commit]);
        assert_eq!(order.finish(stage_b), Vec::<u64>::new());
        assert_eq!(order.finish(commit), vec![read3]);
        order.finish(read3);
        assert!(order.is_empty());
    }

    #[test]
    fn an_abandoned_ticket_releases_those_after_it() {
        let mut order = Order::default();
        let stage = order.arrive(Access::Stage(tx("a")));
        let commit = order.arrive(Access::Commit(tx("a")));
        order.wait(commit);
        assert_eq!(order.finish(stage), vec![commit]);
        assert!(!order.may_apply(stage), "a finished ticket may not apply");
    }
}
