//! When conversations arrive: a daily × weekly load curve (UTC) and an
//! occasional short traffic spike, both deterministic.

use crate::random::{DAY, HOUR, MINUTE, Stream, hash};

/// Relative load per UTC hour of a weekday: quiet nights, busy late mornings.
const HOURLY: [f64; 24] = [
    0.25, 0.18, 0.12, 0.10, 0.12, 0.20, 0.40, 0.70, 1.10, 1.50, 1.80, 1.90, //
    1.70, 1.60, 1.60, 1.50, 1.30, 1.10, 0.90, 0.80, 0.70, 0.60, 0.45, 0.35,
];
/// Relative load per day, Monday first: busy Mondays, quiet weekends.
const WEEKDAY: [f64; 7] = [1.15, 1.10, 1.05, 1.00, 0.95, 0.55, 0.50];
/// 1970-01-05, the first Monday of the epoch.
const FIRST_MONDAY_US: i64 = 4 * DAY;
const HOURS_PER_WEEK: usize = 168;

/// The weekly load curve, normalised so that its mean over a week is 1.
#[derive(Debug, Clone)]
pub(crate) struct Seasonality {
    nodes: [f64; HOURS_PER_WEEK],
}

impl Seasonality {
    pub(crate) fn new() -> Self {
        let mut nodes = [0.0; HOURS_PER_WEEK];
        for (h, node) in nodes.iter_mut().enumerate() {
            *node = WEEKDAY[h / 24] * HOURLY[h % 24];
        }
        // Linear interpolation between hourly nodes of a cyclic curve
        // integrates to exactly the mean of the nodes.
        let mean = nodes.iter().sum::<f64>() / HOURS_PER_WEEK as f64;
        for node in &mut nodes {
            *node /= mean;
        }
        Self { nodes }
    }

    /// Load at `t` relative to the weekly mean.
    pub(crate) fn load(&self, t: i64) -> f64 {
        let pos = (t - FIRST_MONDAY_US).rem_euclid(7 * DAY);
        let h = (pos / HOUR) as usize;
        let frac = (pos % HOUR) as f64 / HOUR as f64;
        let a = self.nodes[h % HOURS_PER_WEEK];
        let b = self.nodes[(h + 1) % HOURS_PER_WEEK];
        a + (b - a) * frac
    }
}

/// Days per spike period: one burst somewhere in every such period.
const SPIKE_PERIOD_DAYS: i64 = 3;

/// A short burst (20–60 min, 3–5× the rate, in daytime) once every three
/// days per tenant — the kind of thing an outage or a newsletter causes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Spike {
    pub(crate) start: i64,
    pub(crate) end: i64,
    pub(crate) factor: f64,
}

impl Spike {
    /// The spike of the period containing `t`.
    pub(crate) fn around(seed: u64, tenant: u64, t: i64) -> Self {
        let period = t.div_euclid(DAY).div_euclid(SPIKE_PERIOD_DAYS);
        let h = hash(seed, tenant, Stream::Spike, &[period]);
        let bits = |shift: u32, modulo: u64| ((h >> shift) % modulo) as i64;
        let start = (period * SPIKE_PERIOD_DAYS + bits(0, 3)) * DAY
            + (9 + bits(8, 9)) * HOUR
            + bits(16, 60) * MINUTE;
        let end = start + (20 + bits(24, 41)) * MINUTE;
        let factor = 3.0 + bits(32, 201) as f64 / 100.0;
        Self { start, end, factor }
    }

    /// Rate multiplier at `t`.
    pub(crate) fn factor_at(&self, t: i64) -> f64 {
        if (self.start..self.end).contains(&t) {
            self.factor
        } else {
            1.0
        }
    }
}

/// Day of the week of `t`, Monday = 0.
pub(crate) fn weekday(t: i64) -> usize {
    (t - FIRST_MONDAY_US).rem_euclid(7 * DAY).div_euclid(DAY) as usize
}
