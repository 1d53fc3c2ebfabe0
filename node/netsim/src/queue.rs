//! The event heap: items ordered by (time, sequence number).
//!
//! The sequence number is assigned at push and breaks ties between equal times in
//! insertion order, so two runs that push the same items in the same order pop them in the
//! same order — the property the simulator's determinism rests on. Entries hold the item
//! inline (no boxing); the heap's storage is reused, so a steady state allocates nothing.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use tern_base::Timestamp;

struct Entry<T> {
    at: Timestamp,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<T> Eq for Entry<T> {}

impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for Entry<T> {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest (time, seq) on top.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A min-heap of timed items; ties pop in push order.
pub struct EventQueue<T> {
    heap: BinaryHeap<Entry<T>>,
    seq: u64,
}

impl<T> Default for EventQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> EventQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self { heap: BinaryHeap::new(), seq: 0 }
    }

    /// Schedules `item` at `at`.
    pub fn push(&mut self, at: Timestamp, item: T) {
        self.seq += 1;
        self.heap.push(Entry { at, seq: self.seq, item });
    }

    /// The earliest item and its time.
    pub fn pop(&mut self) -> Option<(Timestamp, T)> {
        self.heap.pop().map(|e| (e.at, e.item))
    }

    /// The time of the earliest item.
    pub fn peek_time(&self) -> Option<Timestamp> {
        self.heap.peek().map(|e| e.at)
    }

    /// Items queued.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Items pushed so far (the next sequence number minus one).
    pub fn pushed(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_by_time_then_push_order() {
        let mut q = EventQueue::new();
        q.push(Timestamp::from_millis(5), "c");
        q.push(Timestamp::from_millis(1), "a");
        q.push(Timestamp::from_millis(5), "d");
        q.push(Timestamp::from_millis(1), "b");
        assert_eq!(q.peek_time(), Some(Timestamp::from_millis(1)));
        let order: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, s)| s).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
        assert!(q.is_empty());
        assert_eq!(q.pushed(), 4);
    }
}
