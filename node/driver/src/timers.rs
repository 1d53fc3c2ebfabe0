//! [`Timers`]: a min-heap of endpoint deadlines with lazy deletion.
//!
//! A thread may run thousands of endpoints, so the loop must not scan them all each
//! turn to find the earliest deadline. Each endpoint's slot remembers the deadline
//! it has in the heap (`armed`). When an input moves the deadline *earlier*, a new
//! entry is pushed; when it moves *later*, nothing is pushed and the early entry,
//! once due, is found to be too early and re-armed. An entry is current only if its
//! time equals the slot's `armed` and its generation matches; anything else is
//! stale and skipped. [`Timers::compact`] rebuilds the heap when stale entries pile
//! up, bounding its size by a multiple of the live endpoints.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use tern_base::Timestamp;

/// One heap entry: endpoint slot `slot` of generation `generation` wants a call at `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    pub(crate) at: Timestamp,
    pub(crate) slot: u32,
    pub(crate) generation: u16,
}

/// The deadline heap of one driver thread.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Adds an entry; the caller records `at` as the slot's armed deadline.
    pub(crate) fn push(&mut self, entry: Entry) {
        if entry.at != Timestamp::NEVER {
            self.heap.push(Reverse(entry));
        }
    }

    /// The earliest entry's time (possibly stale, which only wakes the loop early).
    pub(crate) fn next(&self) -> Option<Timestamp> {
        self.heap.peek().map(|e| e.0.at)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<Entry> {
        if self.heap.peek()?.0.at > now {
            return None;
        }
        self.heap.pop().map(|e| e.0)
    }

    /// Entries in the heap, stale ones included.
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Replaces the heap with exactly `current` (the slots' armed deadlines).
    pub(crate) fn compact(&mut self, current: impl Iterator<Item = Entry>) {
        self.heap.clear();
        self.heap.extend(current.filter(|e| e.at != Timestamp::NEVER).map(Reverse));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(ms: u64, slot: u32) -> Entry {
        Entry { at: Timestamp::from_millis(ms), slot, generation: 0 }
    }

    #[test]
    fn pops_due_entries_earliest_first() {
        let mut t = Timers::default();
        t.push(e(30, 1));
        t.push(e(10, 2));
        t.push(Entry { at: Timestamp::NEVER, slot: 3, generation: 0 });
        t.push(e(20, 3));
        assert_eq!(t.len(), 3);
        assert_eq!(t.next(), Some(Timestamp::from_millis(10)));
        let now = Timestamp::from_millis(25);
        assert_eq!(t.pop_due(now), Some(e(10, 2)));
        assert_eq!(t.pop_due(now), Some(e(20, 3)));
        assert_eq!(t.pop_due(now), None);
        t.compact([e(5, 9)].into_iter());
        assert_eq!(t.len(), 1);
        assert_eq!(t.pop_due(now), Some(e(5, 9)));
    }
}
