//! What a path does to a datagram: latency with jitter, loss (uniform or Gilbert-Elliott
//! bursts), duplication, reordering, corruption, and the sender's uplink bandwidth.
//!
//! Probabilities are integers in parts per million ([`Prob`]) so that configurations
//! compare exactly and every decision is one integer draw from the network's RNG.

use std::time::Duration;

use tern_base::Rng;

/// A probability in parts per million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Prob(u32);

impl Prob {
    /// Never.
    pub const ZERO: Self = Self(0);
    /// Always.
    pub const ONE: Self = Self(1_000_000);

    /// `ppm` parts per million (capped at one million).
    pub const fn ppm(ppm: u32) -> Self {
        Self(if ppm > 1_000_000 { 1_000_000 } else { ppm })
    }

    /// `p` in `[0, 1]`, rounded to the nearest ppm; out-of-range values are clamped.
    pub fn from_f64(p: f64) -> Self {
        let ppm = (p.clamp(0.0, 1.0) * 1e6).round();
        Self::ppm(ppm as u32)
    }

    /// Parts per million.
    pub const fn as_ppm(self) -> u32 {
        self.0
    }

    /// As a fraction.
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1e6
    }

    /// One Bernoulli draw. Zero and one draw nothing, so enabling a feature elsewhere does
    /// not shift the random stream of paths that do not use it.
    pub fn sample(self, rng: &mut Rng) -> bool {
        match self.0 {
            0 => false,
            1_000_000 => true,
            p => rng.below(1_000_000) < u64::from(p),
        }
    }
}

/// Gilbert-Elliott bursty loss: a two-state Markov chain stepped once per datagram sent
/// from a site; each state has its own loss probability.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GilbertElliott {
    /// Good → bad transition probability per datagram.
    pub enter_bad: Prob,
    /// Bad → good transition probability per datagram.
    pub leave_bad: Prob,
    /// Loss in the good state.
    pub loss_good: Prob,
    /// Loss in the bad state.
    pub loss_bad: Prob,
}

impl GilbertElliott {
    /// Bursts that lose every datagram, `mean_burst` datagrams long on average, tuned so
    /// that the long-run loss rate is `average_loss` (`0 <= average_loss < 1`).
    pub fn bursty(average_loss: f64, mean_burst: f64) -> Self {
        let leave = 1.0 / mean_burst.max(1.0);
        let bad = average_loss.clamp(0.0, 0.99);
        let enter = bad * leave / (1.0 - bad);
        Self {
            enter_bad: Prob::from_f64(enter),
            leave_bad: Prob::from_f64(leave),
            loss_good: Prob::ZERO,
            loss_bad: Prob::ONE,
        }
    }

    /// The long-run loss rate.
    pub fn average_loss(&self) -> f64 {
        let (e, l) = (self.enter_bad.as_f64(), self.leave_bad.as_f64());
        if e + l == 0.0 {
            return self.loss_good.as_f64();
        }
        let bad = e / (e + l);
        bad * self.loss_bad.as_f64() + (1.0 - bad) * self.loss_good.as_f64()
    }

    /// Steps the chain whose state is `bad` and decides one datagram's loss.
    pub fn step(&self, bad: &mut bool, rng: &mut Rng) -> bool {
        let flip = if *bad { self.leave_bad } else { self.enter_bad };
        if flip.sample(rng) {
            *bad = !*bad;
        }
        if *bad { self.loss_bad.sample(rng) } else { self.loss_good.sample(rng) }
    }
}

/// A loss model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Loss {
    /// Nothing is lost.
    #[default]
    None,
    /// Every datagram is lost independently with this probability.
    Uniform(Prob),
    /// Bursts, with the chain's state kept per sending site.
    GilbertElliott(GilbertElliott),
}

impl Loss {
    /// The long-run loss rate.
    pub fn average(&self) -> f64 {
        match self {
            Self::None => 0.0,
            Self::Uniform(p) => p.as_f64(),
            Self::GilbertElliott(ge) => ge.average_loss(),
        }
    }
}

/// Delay added on top of a path's base latency, drawn per datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Jitter {
    /// No jitter.
    #[default]
    None,
    /// Uniform in `[0, max]`.
    Uniform(Duration),
    /// Exponential with this mean, capped at 20 means (a long tail that still ends).
    Exponential(Duration),
}

impl Jitter {
    /// One draw.
    pub fn sample(&self, rng: &mut Rng) -> Duration {
        match *self {
            Self::None => Duration::ZERO,
            Self::Uniform(max) => {
                let max = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rng.below(max.saturating_add(1)))
            }
            Self::Exponential(mean) => {
                // 53 random bits -> u in [0, 1); -ln(1 - u) is Exp(1).
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let x = (-(1.0 - u).ln()).min(20.0);
                mean.mul_f64(x)
            }
        }
    }
}

/// How one direction of a path treats datagrams, on top of the sites' own latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkConfig {
    /// Extra one-way delay.
    pub latency: Duration,
    /// Per-datagram jitter (also reorders datagrams whose jitter differs).
    pub jitter: Jitter,
    /// Loss.
    pub loss: Loss,
    /// A datagram is delivered twice (the copy with its own jitter).
    pub duplicate: Prob,
    /// A datagram is held back by `reorder_delay`, letting later ones overtake it.
    pub reorder: Prob,
    /// Hold-back of a reordered datagram.
    pub reorder_delay: Duration,
    /// One bit of the payload is flipped (the UDP checksum is assumed to miss it).
    pub corrupt: Prob,
}

/// An uplink: datagrams serialise at `bytes_per_sec`; one that would wait longer than
/// `queue` behind earlier ones is tail-dropped (a bounded router buffer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// Line rate.
    pub bytes_per_sec: u64,
    /// Longest queueing delay before tail drop.
    pub queue: Duration,
}

impl Bandwidth {
    /// Time to serialise `len` bytes (plus 28 bytes of IPv4 + UDP headers).
    pub fn serialise(&self, len: usize) -> Duration {
        let scaled = (len as u64 + 28).saturating_mul(1_000_000_000);
        Duration::from_nanos(scaled / self.bytes_per_sec.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_are_exact_at_the_ends() {
        let mut rng = Rng::from_seed(1);
        assert!((0..1000).all(|_| !Prob::ZERO.sample(&mut rng)));
        assert!((0..1000).all(|_| Prob::ONE.sample(&mut rng)));
        assert_eq!(Prob::from_f64(0.05), Prob::ppm(50_000));
        assert_eq!(Prob::from_f64(7.0), Prob::ONE);
        let hits = (0..100_000).filter(|_| Prob::from_f64(0.05).sample(&mut rng)).count();
        assert!((4_500..5_500).contains(&hits), "{hits}");
    }

    #[test]
    fn gilbert_elliott_has_the_requested_rate_and_bursts() {
        let ge = GilbertElliott::bursty(0.05, 10.0);
        assert!((ge.average_loss() - 0.05).abs() < 0.002);
        let mut rng = Rng::from_seed(2);
        let mut bad = false;
        let (mut lost, mut bursts, mut prev) = (0, 0, false);
        let n = 400_000;
        for _ in 0..n {
            let l = ge.step(&mut bad, &mut rng);
            lost += usize::from(l);
            bursts += usize::from(l && !prev);
            prev = l;
        }
        let rate = lost as f64 / f64::from(n);
        assert!((0.04..0.06).contains(&rate), "rate {rate}");
        let mean_burst = lost as f64 / bursts as f64;
        assert!((8.0..12.0).contains(&mean_burst), "mean burst {mean_burst}");
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut rng = Rng::from_seed(3);
        let max = Duration::from_millis(10);
        assert!((0..1000).all(|_| Jitter::Uniform(max).sample(&mut rng) <= max));
        let mean = Duration::from_millis(5);
        let total: Duration = (0..10_000).map(|_| Jitter::Exponential(mean).sample(&mut rng)).sum();
        let avg = total / 10_000;
        assert!(avg > Duration::from_millis(4) && avg < Duration::from_millis(6), "{avg:?}");
        assert_eq!(Jitter::None.sample(&mut rng), Duration::ZERO);
    }

    #[test]
    fn serialisation_time() {
        let bw = Bandwidth { bytes_per_sec: 1_000_000, queue: Duration::from_millis(50) };
        assert_eq!(bw.serialise(972), Duration::from_millis(1));
    }
}
