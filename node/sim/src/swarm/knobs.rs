//! The knobs of one swarm run, all drawn from its seed: network conditions, population,
//! workload rates and a fault schedule that ends before the quiet period.

use std::fmt;
use std::time::Duration;

use tern_base::Rng;
use tern_netsim::{Bandwidth, GilbertElliott, Jitter, LinkConfig, Loss, NatConfig, Prob};

/// Silence at the end of a run: faults are healed this long before liveness is checked
/// (two re-announce rounds, many ping and refresh ticks).
pub const QUIET: Duration = Duration::from_secs(10 * 60);
/// Time given to the population to join.
pub const JOIN: Duration = Duration::from_secs(120);

/// A fault injected for a while.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Kill this fraction of the ordinary nodes at once (never healed: the dead stay dead).
    Kill(f64),
    /// Kill this many nodes and start as many fresh ones.
    Churn(usize),
    /// Split the ordinary nodes in two halves; bootstrap nodes stay reachable from both.
    /// `one_way`: only the first half cannot reach the second.
    Partition {
        /// Block one direction only.
        one_way: bool,
    },
    /// Pause this many nodes (their process stops; arrivals wait).
    Pause(usize),
    /// Raise uniform loss on every path to this probability.
    LossSpike(Prob),
}

/// One scheduled fault.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    /// Start, from the beginning of the run.
    pub at: Duration,
    /// How long until it heals.
    pub duration: Duration,
    /// What it does.
    pub kind: FaultKind,
}

/// Everything a seed decides about a run.
#[derive(Debug, Clone)]
pub struct Knobs {
    /// Default link: loss, jitter, duplication, reordering, corruption.
    pub link: LinkConfig,
    /// Fraction of ordinary nodes behind NAT boxes.
    pub nat_fraction: f64,
    /// NAT kinds to draw from.
    pub nat_kinds: Vec<NatConfig>,
    /// Hosts per NAT box (1 = one client per box).
    pub hosts_per_nat: usize,
    /// Fraction of public nodes running adaptive (the rest are forced persistent).
    pub adaptive_fraction: f64,
    /// Nodes whose writes an on-path attacker tampers with.
    pub forgers: usize,
    /// Announces started per simulated minute.
    pub announces_per_min: usize,
    /// Lookups started per simulated minute.
    pub lookups_per_min: usize,
    /// Mutable and immutable puts (each followed by a get) per simulated minute.
    pub writes_per_min: usize,
    /// Probability that a workload step also unannounces one active topic.
    pub unannounce: Prob,
    /// The fault schedule, by start time.
    pub faults: Vec<Fault>,
    /// Every site's uplink (bandwidth and queue), `None` for unlimited.
    pub uplink: Option<Bandwidth>,
}

fn frac(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    lo + (hi - lo) * (rng.below(1_000_001) as f64 / 1e6)
}

impl Knobs {
    /// Draws the knobs of a run of `minutes` from `seed`.
    pub fn draw(seed: u64, minutes: u64) -> Self {
        // Separate stream from the world's, so adding a knob does not reshuffle worlds.
        let mut rng = Rng::from_seed(seed ^ 0x6b6e_6f62_735f_7631);
        let loss = match rng.below(10) {
            0..3 => Loss::None,
            3..7 => Loss::Uniform(Prob::from_f64(frac(&mut rng, 0.0, 0.05))),
            _ => Loss::GilbertElliott(GilbertElliott::bursty(
                frac(&mut rng, 0.005, 0.05),
                frac(&mut rng, 2.0, 10.0),
            )),
        };
        let jitter = if rng.below(2) == 0 {
            Jitter::Uniform(Duration::from_micros(rng.below(5_000)))
        } else {
            Jitter::Exponential(Duration::from_micros(500 + rng.below(4_500)))
        };
        let link = LinkConfig {
            latency: Duration::ZERO,
            jitter,
            loss,
            duplicate: Prob::from_f64(frac(&mut rng, 0.0, 0.01)),
            reorder: Prob::from_f64(frac(&mut rng, 0.0, 0.02)),
            reorder_delay: Duration::from_millis(10 + rng.below(40)),
            corrupt: Prob::from_f64(frac(&mut rng, 0.0, 0.003)),
        };
        let all_kinds = [
            NatConfig::consistent(tern_netsim::Filtering::Open),
            NatConfig::consistent(tern_netsim::Filtering::AddressRestricted),
            NatConfig::consistent(tern_netsim::Filtering::PortRestricted),
            NatConfig::random(),
        ];
        let nat_kinds: Vec<NatConfig> =
            all_kinds.iter().copied().filter(|_| rng.below(4) != 0).collect();
        let nat_kinds = if nat_kinds.is_empty() { vec![NatConfig::random()] } else { nat_kinds };
        let mut knobs = Self {
            link,
            nat_fraction: frac(&mut rng, 0.0, 0.4),
            nat_kinds,
            hosts_per_nat: 1 + rng.below(3) as usize,
            adaptive_fraction: frac(&mut rng, 0.0, 0.5),
            forgers: rng.below(4) as usize,
            announces_per_min: 2 + rng.below(10) as usize,
            lookups_per_min: 5 + rng.below(40) as usize,
            writes_per_min: rng.below(6) as usize,
            unannounce: Prob::from_f64(frac(&mut rng, 0.0, 0.2)),
            faults: Vec::new(),
            uplink: None,
        };
        knobs.faults = draw_faults(&mut rng, minutes);
        // Drawn last so that adding it did not change earlier seeds' other knobs.
        if rng.below(10) < 3 {
            let mbit = 1 + rng.below(20);
            let queue = Duration::from_millis(50 + rng.below(151));
            knobs.uplink = Some(Bandwidth { bytes_per_sec: mbit * 125_000, queue });
        }
        knobs
    }
}

impl Knobs {
    /// The benchmark's fixed knobs: default latencies, no loss and no faults, 10 % of
    /// nodes behind NATs, half the public ones adaptive, a steady workload.
    pub fn bench() -> Self {
        Self {
            link: tern_netsim::NetConfig::default().link,
            nat_fraction: 0.1,
            nat_kinds: vec![
                NatConfig::consistent(tern_netsim::Filtering::PortRestricted),
                NatConfig::random(),
            ],
            hosts_per_nat: 1,
            adaptive_fraction: 0.5,
            forgers: 0,
            announces_per_min: 20,
            lookups_per_min: 60,
            writes_per_min: 6,
            unannounce: Prob::ZERO,
            faults: Vec::new(),
            uplink: None,
        }
    }
}

/// Up to three faults between the end of the join phase (plus two minutes of workload)
/// and the start of the quiet period, each healed before the quiet period begins.
fn draw_faults(rng: &mut Rng, minutes: u64) -> Vec<Fault> {
    let total = Duration::from_secs(minutes * 60);
    let first = JOIN + Duration::from_secs(120);
    let Some(window) = total.checked_sub(QUIET + first) else { return Vec::new() };
    if window < Duration::from_secs(60) {
        return Vec::new();
    }
    let count = rng.below(4);
    let mut faults = Vec::new();
    for _ in 0..count {
        let kind = match rng.below(6) {
            0 => FaultKind::Kill(frac(rng, 0.05, 0.3)),
            1 => FaultKind::Churn(1 + rng.below(20) as usize),
            2 => FaultKind::Partition { one_way: false },
            3 => FaultKind::Partition { one_way: true },
            4 => FaultKind::Pause(1 + rng.below(10) as usize),
            _ => FaultKind::LossSpike(Prob::from_f64(frac(rng, 0.05, 0.3))),
        };
        let max_dur = window.min(Duration::from_secs(5 * 60));
        let duration = Duration::from_secs(30).min(max_dur)
            + Duration::from_secs(rng.below(max_dur.as_secs().saturating_sub(30) + 1));
        let slack = window.saturating_sub(duration).as_secs();
        let at = first + Duration::from_secs(rng.below(slack + 1));
        faults.push(Fault { at, duration, kind });
    }
    faults.sort_by_key(|f| f.at);
    faults
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Kill(frac) => write!(f, "kill {:.0} % of the nodes", 100.0 * frac),
            Self::Churn(n) => write!(f, "churn {n} nodes"),
            Self::Partition { one_way: false } => write!(f, "symmetric partition"),
            Self::Partition { one_way: true } => write!(f, "one-way partition"),
            Self::Pause(n) => write!(f, "pause {n} nodes"),
            Self::LossSpike(p) => write!(f, "loss spike to {:.1} %", 100.0 * p.as_f64()),
        }
    }
}

impl fmt::Display for Knobs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = &self.link;
        let loss = match l.loss {
            Loss::None => "none".to_owned(),
            Loss::Uniform(p) => format!("uniform {:.2} %", 100.0 * p.as_f64()),
            Loss::GilbertElliott(ge) => format!("bursty {:.2} %", 100.0 * ge.average_loss()),
        };
        writeln!(
            f,
            "  link: loss {loss}, jitter {:?}, dup {:.2} %, reorder {:.2} %, corrupt {:.2} %",
            l.jitter,
            100.0 * l.duplicate.as_f64(),
            100.0 * l.reorder.as_f64(),
            100.0 * l.corrupt.as_f64()
        )?;
        if let Some(bw) = self.uplink {
            writeln!(
                f,
                "  uplinks: {:.0} Mbit/s, {} ms queue",
                bw.bytes_per_sec as f64 * 8.0 / 1e6,
                bw.queue.as_millis()
            )?;
        }
        let kinds: Vec<&str> = self.nat_kinds.iter().map(NatConfig::label).collect();
        writeln!(
            f,
            "  population: {:.0} % NAT'd ({}, {} per box), {:.0} % of public adaptive, {} forgers",
            100.0 * self.nat_fraction,
            kinds.join(" "),
            self.hosts_per_nat,
            100.0 * self.adaptive_fraction,
            self.forgers
        )?;
        writeln!(
            f,
            "  workload/min: {} announces, {} lookups, {} writes, unannounce {:.0} %",
            self.announces_per_min,
            self.lookups_per_min,
            self.writes_per_min,
            100.0 * self.unannounce.as_f64()
        )?;
        for x in &self.faults {
            writeln!(
                f,
                "  fault at {} s for {} s: {}",
                x.at.as_secs(),
                x.duration.as_secs(),
                x.kind
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn knobs_are_a_function_of_the_seed_and_faults_end_before_the_quiet_period() {
        assert_eq!(format!("{}", Knobs::draw(5, 30)), format!("{}", Knobs::draw(5, 30)));
        let mut kinds = 0;
        for seed in 0..200 {
            let k = Knobs::draw(seed, 30);
            for f in &k.faults {
                assert!(f.at >= JOIN);
                assert!(f.at + f.duration <= Duration::from_secs(30 * 60) - QUIET, "{f:?}");
            }
            kinds += k.faults.len();
        }
        assert!(kinds > 100, "faults are drawn");
        assert!(Knobs::draw(1, 5).faults.is_empty(), "too short for faults");
    }
}
