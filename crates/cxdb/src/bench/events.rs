//! A deterministic stream of realistic support events: three tenants, 30
//! days, the SPEC §2 event types in a help-desk mix, conversations that
//! carry their channel and customer from event to event.
//!
//! The stream is nearly time-ordered (event `n` of `total` sits at
//! `n / total` of the 30 days, ± 5 minutes), as live ingest is: a batch
//! touches the three tenants and usually one day, not 90 partitions.

use cxdb_model::Event;
use cxdb_model::vocab::{AGENT_STATUSES, CHANNELS, CONVERSATION_STATUSES, STORES};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TENANTS: &[&str] = &["acme", "globex", "initech"];
/// 2026-01-01T00:00:00Z in epoch microseconds.
const START_US: i64 = 1_767_225_600_000_000;
const SPAN_US: i64 = 30 * 86_400_000_000;
const JITTER_US: i64 = 300_000_000;
/// Messages and replies go to one of the latest conversations of a tenant.
const OPEN_CONVERSATIONS: u64 = 500;
const AGENTS: u64 = 40;
const TEAMS: u64 = 4;
const BOTS: u64 = 3;
const CUSTOMERS: u64 = 50_000;
/// Percent of conversations per channel, in `CHANNELS` order.
const CHANNEL_WEIGHTS: [u64; 10] = [30, 22, 15, 6, 5, 5, 7, 4, 3, 3];
const INTENTS: &[&str] = &["order_status", "refund", "shipping", "account", "billing"];
const PHRASES: &[&str] = &[
    "Hi, I have a question about my order.",
    "Where is my package?",
    "It says delivered but nothing arrived.",
    "Can I change the shipping address?",
    "I would like a refund please.",
    "Thanks for your patience.",
    "Let me check that for you.",
    "Your order number is in the confirmation email.",
    "The tracking link does not work.",
    "Could you send a photo of the damaged item?",
    "I was charged twice.",
    "We have issued the refund.",
    "Is there anything else I can help with?",
    "Perfect, thank you!",
    "The app keeps logging me out.",
    "I can't reset my password.",
];

/// Generates event `n`, `n + 1`, … of a stream of `total` events.
pub(crate) struct Generator {
    rng: StdRng,
    prefix: String,
    next: u64,
    total: u64,
    /// Conversations created so far, per tenant.
    conversations: [u64; 3],
}

impl Generator {
    /// Event ids are `{prefix}-{n}`: unique within the stream.
    pub(crate) fn new(seed: u64, prefix: &str, total: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            prefix: prefix.to_string(),
            next: 0,
            total: total.max(1),
            // Each tenant starts with a backlog so the first messages have a
            // conversation to belong to.
            conversations: [OPEN_CONVERSATIONS; 3],
        }
    }

    pub(crate) fn batch(&mut self, n: usize) -> Vec<Event> {
        (0..n).map(|_| self.next_event()).collect()
    }

    pub(crate) fn next_event(&mut self) -> Event {
        let n = self.next;
        self.next += 1;
        let t = self.rng.random_range(0..TENANTS.len());
        let base = START_US + (i128::from(n) * i128::from(SPAN_US) / i128::from(self.total)) as i64;
        let event_time = (base + self.rng.random_range(-JITTER_US..=JITTER_US)).max(START_US);
        let mut e = Event {
            tenant_id: TENANTS[t].to_string(),
            event_id: format!("{}-{n}", self.prefix),
            event_time,
            ..Default::default()
        };
        let roll = self.rng.random_range(0..100u32);
        match roll {
            0..8 => {
                let conv = self.conversations[t];
                self.conversations[t] += 1;
                e.event_type = "conversation.created".into();
                self.set_conversation(&mut e, t, conv);
                e.customer_email = Some(format!("customer{}@example.com", customer(t, conv)));
                e.priority = Some(if roll == 0 { "high" } else { "normal" }.into());
                e.team_id = Some(format!("team-{}", mix(t, conv) % TEAMS));
            }
            8..60 => {
                let conv = self.open_conversation(t);
                e.event_type = "message.created".into();
                self.set_conversation(&mut e, t, conv);
                e.message_id = Some(format!("msg-{n}"));
                let actor = match self.rng.random_range(0..100u32) {
                    0..50 => "customer",
                    50..85 => {
                        e.agent_id = Some(self.agent());
                        "agent"
                    }
                    85..95 => "bot",
                    _ => "system",
                };
                e.actor_type = Some(actor.into());
                e.body = Some(self.body());
            }
            60..67 => {
                let conv = self.open_conversation(t);
                e.event_type = "conversation.assigned".into();
                self.set_conversation(&mut e, t, conv);
                e.agent_id = Some(self.agent());
                e.team_id = Some(format!("team-{}", mix(t, conv) % TEAMS));
            }
            67..77 => {
                let conv = self.open_conversation(t);
                e.event_type = "conversation.status_changed".into();
                self.set_conversation(&mut e, t, conv);
                let s = self.rng.random_range(0..CONVERSATION_STATUSES.len());
                e.status = Some(CONVERSATION_STATUSES[s].into());
            }
            77..80 => {
                let conv = self.open_conversation(t);
                e.event_type = "csat.submitted".into();
                self.set_conversation(&mut e, t, conv);
                let score = match self.rng.random_range(0..100u32) {
                    0..5 => 1,
                    5..12 => 2,
                    12..25 => 3,
                    25..55 => 4,
                    _ => 5,
                };
                e.csat_score = Some(score);
            }
            80..92 => {
                let conv = self.open_conversation(t);
                e.event_type = "bot.replied".into();
                self.set_conversation(&mut e, t, conv);
                e.bot_id = Some(format!("bot-{}", self.rng.random_range(0..BOTS)));
                let i = self.rng.random_range(0..INTENTS.len());
                e.intent = Some(INTENTS[i].into());
                e.confidence = Some(self.rng.random_range(0.3..1.0));
                e.body = Some(self.body());
            }
            92..96 => {
                e.event_type = "agent.status_changed".into();
                e.agent_id = Some(self.agent());
                let s = self.rng.random_range(0..AGENT_STATUSES.len());
                e.status = Some(AGENT_STATUSES[s].into());
            }
            _ => {
                e.event_type = "order.created".into();
                e.store = Some(STORES[self.rng.random_range(0..STORES.len())].into());
                e.order_id = Some(format!("order-{n}"));
                e.order_total = Some(f64::from(self.rng.random_range(500..50_000u32)) / 100.0);
                e.currency = Some("USD".into());
                let c = self.rng.random_range(0..CUSTOMERS);
                e.customer_id = Some(format!("cust-{c}"));
            }
        }
        e
    }

    fn open_conversation(&mut self, t: usize) -> u64 {
        self.conversations[t] - 1 - self.rng.random_range(0..OPEN_CONVERSATIONS)
    }

    fn set_conversation(&self, e: &mut Event, t: usize, conv: u64) {
        e.conversation_id = Some(format!("conv-{conv}"));
        e.channel = Some(channel(t, conv).into());
        e.customer_id = Some(format!("cust-{}", customer(t, conv)));
    }

    fn agent(&mut self) -> String {
        format!("agent-{}", self.rng.random_range(0..AGENTS))
    }

    /// 20 to 200 characters of phrases.
    fn body(&mut self) -> String {
        let len = self.rng.random_range(20..=200usize);
        let mut s = String::with_capacity(len + 64);
        while s.len() < len {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(PHRASES[self.rng.random_range(0..PHRASES.len())]);
        }
        // Phrases are ASCII, so any byte index is a char boundary.
        s.truncate(len);
        s
    }
}

/// A conversation's fixed attributes derive from a hash of its id, so every
/// event of it agrees without the generator remembering them.
fn mix(t: usize, conv: u64) -> u64 {
    let mut z = conv ^ ((t as u64) << 56) ^ 0x9E37_79B9_7F4A_7C15;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn channel(t: usize, conv: u64) -> &'static str {
    let mut pick = mix(t, conv) % 100;
    for (c, w) in CHANNELS.iter().zip(CHANNEL_WEIGHTS) {
        if pick < w {
            return c;
        }
        pick -= w;
    }
    CHANNELS[0]
}

fn customer(t: usize, conv: u64) -> u64 {
    mix(t, conv).rotate_left(17) % CUSTOMERS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_valid_unique_and_deterministic() {
        let mut a = Generator::new(7, "t", 20_000);
        let mut b = Generator::new(7, "t", 20_000);
        let events = a.batch(20_000);
        assert_eq!(events, b.batch(20_000));
        let ids: std::collections::HashSet<&str> =
            events.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids.len(), events.len());
        for (i, e) in events.iter().enumerate() {
            let mut e = e.clone();
            assert_eq!(e.validate(i), Ok(()), "{e:?}");
            if let Some(body) = &e.body {
                assert!((20..=200).contains(&body.len()), "{body:?}");
            }
        }
        let span = events.iter().map(|e| e.event_time).max().unwrap_or(0)
            - events.iter().map(|e| e.event_time).min().unwrap_or(0);
        assert!(span > 29 * 86_400_000_000, "events span {span} µs");
        let types: std::collections::HashSet<&str> =
            events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types.len(), 8, "{types:?}");
    }
}
