//! The simulation clock: fixed one-minute steps per tenant, each with its own
//! RNG, and a priority queue of generated-but-future events that
//! [`DemoGenerator::advance_to`] drains window by window.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use cxdb_model::Event;
use rand::Rng;

use crate::DemoConfig;
use crate::agents::Roster;
use crate::automation;
use crate::commerce::{self, simulate_order};
use crate::conversation::{ConversationStart, TenantView, simulate};
use crate::phrases::{LOGIN, TOPICS};
use crate::random::{DAY, MINUTE, Stream, fnv, poisson, rng_for, weighted};
use crate::seasonality::{Seasonality, Spike};

/// Orders per conversation at the same load.
const ORDERS_PER_CONVERSATION: f64 = 0.4;
/// Conversations per arrival once cross-channel returns are counted
/// (measured from the return probabilities in `conversation.rs`).
const RETURN_MULTIPLIER: f64 = 1.1;
/// Minutes between runs of the scheduled `order-sync` batch workflow.
const BATCH_EVERY_MINUTES: i64 = 15;

struct Tenant {
    name: String,
    hash: u64,
    roster: Roster,
}

/// An event waiting for its time; ordered by time, then by generation order,
/// which is the same whatever the window boundaries.
struct Queued {
    time: i64,
    seq: u64,
    event: Event,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.seq) == (other.time, other.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    // Reversed: `BinaryHeap` is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.seq).cmp(&(self.time, self.seq))
    }
}

/// Deterministic synthetic support traffic for a set of tenants.
pub struct DemoGenerator {
    seed: u64,
    /// New conversations per minute per tenant at the weekly mean.
    per_minute: f64,
    start: i64,
    first_step: i64,
    next_step: i64,
    emitted_to: i64,
    tenants: Vec<Tenant>,
    seasonality: Seasonality,
    queue: BinaryHeap<Queued>,
    seq: u64,
}

impl DemoGenerator {
    /// A simulation whose clock starts at `start_us` (epoch microseconds).
    /// Tenant ids are used as given; see [`DemoConfig::validate`].
    pub fn new(config: DemoConfig, start_us: i64) -> Self {
        let rate = config.conversations_per_hour;
        let per_minute = if rate.is_finite() && rate > 0.0 {
            rate / 60.0
        } else {
            0.0
        };
        let tenants = config
            .tenants
            .into_iter()
            .map(|name| {
                let hash = fnv(&name);
                Tenant {
                    roster: Roster::new(config.seed, hash),
                    name,
                    hash,
                }
            })
            .collect();
        let first_step = start_us.div_euclid(MINUTE);
        Self {
            seed: config.seed,
            per_minute,
            start: start_us,
            first_step,
            next_step: first_step,
            emitted_to: start_us,
            tenants,
            seasonality: Seasonality::new(),
            queue: BinaryHeap::new(),
            seq: 0,
        }
    }

    /// Every event with event_time in [previous `to` (or start), `to`), in
    /// event_time order. The concatenation of the windows does not depend on
    /// where the boundaries fall. A `to` not after the previous one returns
    /// nothing.
    pub fn advance_to(&mut self, to_us: i64) -> Vec<Event> {
        if to_us <= self.emitted_to {
            return Vec::new();
        }
        // Every event a step generates is at or after the step's start, so
        // once all steps starting before `to` ran, nothing earlier can come.
        while self.next_step.saturating_mul(MINUTE) < to_us {
            self.step(self.next_step);
            self.next_step += 1;
        }
        let mut out = Vec::new();
        while let Some(head) = self.queue.peek() {
            if head.time >= to_us {
                break;
            }
            if let Some(q) = self.queue.pop() {
                out.push(q.event);
            }
        }
        self.emitted_to = to_us;
        out
    }

    /// Simulates minute `m` for every tenant.
    fn step(&mut self, m: i64) {
        let t0 = m * MINUTE;
        let mut out = Vec::new();
        for tenant in &self.tenants {
            if m == self.first_step {
                tenant.roster.snapshot(&tenant.name, self.start, &mut out);
            }
            if m == self.first_step || t0.rem_euclid(DAY) == 0 {
                let day = t0.div_euclid(DAY);
                tenant
                    .roster
                    .day_events(&tenant.name, day, self.start, &mut out);
            }
            self.arrivals(tenant, m, &mut out);
        }
        for event in out {
            self.seq += 1;
            self.queue.push(Queued {
                time: event.event_time,
                seq: self.seq,
                event,
            });
        }
    }

    /// New conversations and orders of one tenant in minute `m`.
    fn arrivals(&self, tenant: &Tenant, m: i64, out: &mut Vec<Event>) {
        let t0 = m * MINUTE;
        let mut rng = rng_for(self.seed, tenant.hash, Stream::Step, &[m]);
        let load = self.seasonality.load(t0 + MINUTE / 2);
        let spike = Spike::around(self.seed, tenant.hash, t0).factor_at(t0);
        let load_at = |t: i64| self.seasonality.load(t);
        let view = TenantView {
            name: &tenant.name,
            roster: &tenant.roster,
            load: &load_at,
        };
        // Part of the volume arrives through orders and return visits; the
        // direct rate makes up the rest so the total matches the config.
        let order_share = ORDERS_PER_CONVERSATION * commerce::CONVERSATION_SHARE;
        let direct = self.per_minute * (1.0 / RETURN_MULTIPLIER - order_share);
        let topic_weights: Vec<u32> = TOPICS.iter().map(|t| t.weight).collect();

        let mut starts = Vec::new();
        for i in 0..poisson(&mut rng, direct * load * spike) {
            let at = t0 + rng.random_range(0..MINUTE);
            // A spike is an incident: most of its extra traffic is one issue.
            let topic = if spike > 1.0 && rng.random_bool(0.7) {
                LOGIN
            } else {
                weighted(&mut rng, &topic_weights)
            };
            starts.push(ConversationStart::new(
                &mut rng,
                format!("{m}-{i}"),
                at,
                topic,
            ));
        }
        for i in 0..poisson(&mut rng, self.per_minute * ORDERS_PER_CONVERSATION * load) {
            let at = t0 + rng.random_range(0..MINUTE);
            let mark = out.len();
            let key = format!("{m}-{i}");
            let ticket = simulate_order(&mut rng, &tenant.name, &key, at, out);
            if at < self.start {
                out.truncate(mark);
            } else if let Some(t) = ticket {
                starts.push(ConversationStart {
                    order: Some(t.order),
                    customer: t.customer,
                    ..ConversationStart::new(&mut rng, format!("{key}o"), t.at, t.topic)
                });
            }
        }
        for start in starts {
            let keep = start.at >= self.start;
            let mark = out.len();
            let mut next = Some(start);
            while let Some(s) = next {
                next = simulate(&mut rng, &view, &s, out);
            }
            if !keep {
                out.truncate(mark);
            }
        }
        if m.rem_euclid(BATCH_EVERY_MINUTES) == 0 {
            let template = Event {
                tenant_id: tenant.name.clone(),
                attributes: Some(r#"{"mode":"batch"}"#.into()),
                ..Default::default()
            };
            let at = t0 + rng.random_range(0..5_000_000);
            let ids = [0, 1].map(|i| format!("{}-sync{m}-{i}", tenant.name));
            let run = automation::run(&mut rng, &template, "order-sync", at, 800..9_000, 0.05, ids);
            if at >= self.start {
                out.extend(run);
            }
        }
    }
}
