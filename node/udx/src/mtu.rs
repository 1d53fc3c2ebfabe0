//! Path-MTU probing (spec §1.10): promote a full DATA packet to a probe by padding it
//! through the data-offset byte; climb in steps of 32 up to the maximum; give up after
//! three lost probes.

/// Size increment per successful probe.
const STEP: u16 = 32;
/// Lost probes before the search completes at the current MTU.
const MAX_FAILURES: u8 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No packet acknowledged yet.
    Base,
    /// Probing for `probe_size`.
    Search,
    /// Settled.
    Complete,
}

/// MTU discovery state of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Mtu {
    state: State,
    /// The MTU in use (IP packet size).
    pub current: u16,
    /// The MTU every path starts with.
    pub base: u16,
    max: u16,
    probe_size: u16,
    failures: u8,
    /// A probe is outstanding (only one at a time).
    outstanding: bool,
}

impl Mtu {
    pub(crate) fn new(base: u16, max: u16) -> Self {
        let max = max.max(base);
        let state = if max <= base { State::Complete } else { State::Base };
        Self { state, current: base, base, max, probe_size: base, failures: 0, outstanding: false }
    }

    /// Payload budget of a normal packet.
    pub(crate) fn max_payload(&self) -> usize {
        usize::from(self.current).saturating_sub(super::packet::IPV4_OVERHEAD).max(1)
    }

    /// The first ACK of any packet starts the search.
    pub(crate) fn on_ack(&mut self) {
        if self.state == State::Base {
            self.state = State::Search;
            self.probe_size = self.current.saturating_add(STEP).min(self.max);
        }
    }

    /// Padding that turns a packet with `payload` bytes into a probe, if one is wanted.
    pub(crate) fn probe_pad(&mut self, payload: usize) -> Option<u8> {
        if self.state != State::Search || self.outstanding {
            return None;
        }
        let total = payload + super::packet::IPV4_OVERHEAD;
        let pad = usize::from(self.probe_size).checked_sub(total)?;
        let pad = u8::try_from(pad).ok()?;
        self.outstanding = true;
        Some(pad)
    }

    /// A probe of IP size `size` was acknowledged.
    pub(crate) fn on_probe_acked(&mut self, size: usize) {
        self.outstanding = false;
        let Ok(size) = u16::try_from(size) else { return };
        if self.state != State::Search || size <= self.current {
            return;
        }
        self.current = size.min(self.max);
        if self.current >= self.max {
            self.state = State::Complete;
        } else {
            self.probe_size = self.current.saturating_add(STEP).min(self.max);
        }
    }

    /// A probe was declared lost.
    pub(crate) fn on_probe_lost(&mut self) {
        self.outstanding = false;
        if self.state == State::Search {
            self.failures += 1;
            if self.failures >= MAX_FAILURES {
                self.state = State::Complete;
            }
        }
    }

    /// A driver reported that a datagram of `size` bytes could not be sent, or an RTO
    /// suggests a black hole: fall back to the base MTU and stop probing.
    pub(crate) fn fall_back(&mut self) {
        self.current = self.base;
        self.state = State::Complete;
        self.outstanding = false;
    }

    /// After a change of remote the path is new: start over (spec §1.7).
    pub(crate) fn restart(&mut self) {
        *self = Self::new(self.base, self.max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn climbs_and_gives_up() {
        let mut m = Mtu::new(1200, 1300);
        assert_eq!(m.probe_pad(1152), None);
        m.on_ack();
        assert_eq!(m.probe_pad(1152), Some(32));
        assert_eq!(m.probe_pad(1152), None);
        m.on_probe_acked(1232);
        assert_eq!(m.current, 1232);
        assert_eq!(m.max_payload(), 1184);
        for _ in 0..3 {
            assert!(m.probe_pad(1184).is_some());
            m.on_probe_lost();
        }
        assert_eq!(m.probe_pad(1184), None);
        assert_eq!(m.current, 1232);
    }
}
