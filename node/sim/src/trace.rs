//! The event trace: a running 64-bit digest of everything that happens in a world.
//!
//! Every delivered datagram (time, receiver, socket, sender, length and — at
//! [`TraceLevel::Full`] — every payload byte), every timer a node handles and every event
//! a node reports is folded in, in processing order. Two runs from the same seed must end
//! with the same digest; the determinism test compares them. The digest is a
//! multiply-xorshift mix (not cryptographic: it only has to make accidental equality of
//! different traces vanishingly unlikely), cheap enough to leave on in every run.

/// How much of each event goes into the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceLevel {
    /// Nothing (benchmarks).
    Off,
    /// Times, endpoints, lengths and event kinds.
    #[default]
    Meta,
    /// Also every payload byte and every node event's contents.
    Full,
}

/// The running digest.
#[derive(Debug, Clone)]
pub struct Trace {
    level: TraceLevel,
    hash: u64,
    events: u64,
}

const K: u64 = 0x9e37_79b9_7f4a_7c15;

impl Trace {
    /// An empty trace at `level`.
    pub fn new(level: TraceLevel) -> Self {
        Self { level, hash: 0x243f_6a88_85a3_08d3, events: 0 }
    }

    /// The level.
    pub fn level(&self) -> TraceLevel {
        self.level
    }

    /// Whether anything is recorded.
    pub fn is_on(&self) -> bool {
        self.level != TraceLevel::Off
    }

    /// Whether payloads are recorded.
    pub fn is_full(&self) -> bool {
        self.level == TraceLevel::Full
    }

    /// Events recorded.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// The digest so far.
    pub fn digest(&self) -> u64 {
        self.hash
    }

    /// Folds one word in.
    pub fn word(&mut self, w: u64) {
        let x = (self.hash ^ w).wrapping_mul(K);
        self.hash = x ^ (x >> 29);
    }

    /// Starts an event of kind `tag` at `nanos` for node `node`.
    pub fn event(&mut self, tag: u8, nanos: u64, node: u32) {
        self.events += 1;
        self.word(u64::from(tag) << 56 | u64::from(node));
        self.word(nanos);
    }

    /// Folds bytes in, eight at a time.
    pub fn bytes(&mut self, data: &[u8]) {
        self.word(data.len() as u64);
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.word(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_and_content_matter() {
        let mut a = Trace::new(TraceLevel::Full);
        let mut b = Trace::new(TraceLevel::Full);
        a.event(1, 10, 2);
        a.bytes(b"hello world");
        b.event(1, 10, 2);
        b.bytes(b"hello world");
        assert_eq!(a.digest(), b.digest());
        b.bytes(b"x");
        assert_ne!(a.digest(), b.digest());
        let mut c = Trace::new(TraceLevel::Full);
        c.bytes(b"hello world");
        c.event(1, 10, 2);
        assert_ne!(a.digest(), c.digest());
        assert_eq!(a.events(), 1);
    }
}
