//! Seed derivation and the few distributions the simulation draws from.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) const SECOND: i64 = 1_000_000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;

/// Independent random streams; mixed into every derived seed so that e.g.
/// arrivals and agent shifts never share draws.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Step = 1,
    AgentDay = 2,
    Shift = 3,
    Spike = 4,
}

/// SplitMix64 finaliser: a cheap, well-mixed, stable hash of one word.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Stable hash of `seed`, a tenant hash, a stream and indices.
pub(crate) fn hash(seed: u64, tenant: u64, stream: Stream, parts: &[i64]) -> u64 {
    let mut h = mix(seed ^ mix(tenant ^ mix(stream as u64)));
    for &p in parts {
        h = mix(h ^ p as u64);
    }
    h
}

/// FNV-1a, stable across Rust versions (unlike `DefaultHasher`).
pub(crate) fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

pub(crate) fn rng_for(seed: u64, tenant: u64, stream: Stream, parts: &[i64]) -> StdRng {
    StdRng::seed_from_u64(hash(seed, tenant, stream, parts))
}

/// Index drawn with probability proportional to `weights`.
pub(crate) fn weighted(rng: &mut StdRng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total.max(1));
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    0
}

pub(crate) fn pick<T: Copy>(rng: &mut StdRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Log-normal duration in microseconds with the given median (µs) and
/// shape `sigma`, capped at `max` — support timings are heavy-tailed.
pub(crate) fn lognormal(rng: &mut StdRng, median: i64, sigma: f64, max: i64) -> i64 {
    (lognormal_f64(rng, median as f64, sigma) as i64).clamp(SECOND, max)
}

pub(crate) fn lognormal_f64(rng: &mut StdRng, median: f64, sigma: f64) -> f64 {
    median * (sigma * standard_normal(rng)).exp()
}

fn standard_normal(rng: &mut StdRng) -> f64 {
    // Box–Muller; 1 - u keeps ln() away from 0.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Poisson count with mean `lambda` (Knuth for small means, a rounded
/// normal approximation above 30).
pub(crate) fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if !(lambda.is_finite() && lambda > 0.0) {
        return 0;
    }
    if lambda > 30.0 {
        let v = lambda + lambda.sqrt() * standard_normal(rng);
        return v.round().clamp(0.0, f64::from(u32::MAX)) as u32;
    }
    let limit = (-lambda).exp();
    let mut k = 0;
    let mut p = rng.random::<f64>();
    while p > limit {
        k += 1;
        p *= rng.random::<f64>();
    }
    k
}
