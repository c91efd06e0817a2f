//! One conversation from creation to its last event: optional bot session,
//! queue, assignment, replies, notes, handoffs, transfers, pending/open,
//! solve, reopen, CSAT — and whether the customer comes back on another
//! channel afterwards.

use cxdb_model::Event;
use rand::Rng;
use rand::rngs::StdRng;

use crate::agents::{Roster, TEAMS};
use crate::automation;
use crate::commerce::Order;
use crate::customers::{self, Identity};
use crate::phrases::*;
use crate::random::{DAY, HOUR, MINUTE, SECOND, lognormal, pick, weighted};

const CHANNELS: [&str; 10] = [
    "chat",
    "email",
    "whatsapp",
    "messenger",
    "instagram",
    "sms",
    "voice",
    "web_form",
    "api",
    "slack",
];
const CHANNEL_WEIGHTS: [u32; 10] = [30, 25, 10, 6, 5, 4, 7, 7, 3, 3];
const PRIORITIES: [&str; 4] = ["low", "normal", "high", "urgent"];
const PRIORITY_WEIGHTS: [u32; 4] = [15, 60, 18, 7];

/// How fast a channel moves: medians (µs) of the queue wait, first reply
/// after assignment, customer reply, agent reply and time to solve.
struct Pace {
    queue: i64,
    first_reply: i64,
    customer_reply: i64,
    agent_reply: i64,
    solve: i64,
}

fn pace(channel: &str) -> Pace {
    match channel {
        "email" | "web_form" | "api" => Pace {
            queue: 100 * MINUTE,
            first_reply: 20 * MINUTE,
            customer_reply: 4 * HOUR,
            agent_reply: 90 * MINUTE,
            solve: 3 * HOUR,
        },
        "voice" => Pace {
            queue: 30 * SECOND,
            first_reply: 5 * SECOND,
            customer_reply: 20 * SECOND,
            agent_reply: 20 * SECOND,
            solve: MINUTE,
        },
        "sms" => Pace {
            queue: 6 * MINUTE,
            first_reply: 3 * MINUTE,
            customer_reply: 8 * MINUTE,
            agent_reply: 6 * MINUTE,
            solve: 30 * MINUTE,
        },
        _ => Pace {
            queue: 70 * SECOND,
            first_reply: 40 * SECOND,
            customer_reply: 60 * SECOND,
            agent_reply: 75 * SECOND,
            solve: 4 * MINUTE,
        },
    }
}

/// A draw around `median` with a heavy tail, capped at 40× the median.
fn delay(rng: &mut StdRng, median: i64) -> i64 {
    lognormal(rng, median, 0.9, 40 * median)
}

fn has_bot(channel: &str) -> bool {
    matches!(channel, "chat" | "whatsapp" | "messenger")
}

/// The next channel a returning customer tries: chat, then email, then
/// WhatsApp, then the phone.
fn next_channel(channel: &str) -> &'static str {
    match channel {
        "chat" | "instagram" | "messenger" | "web_form" | "api" | "slack" => "email",
        "email" => "whatsapp",
        "whatsapp" | "sms" => "voice",
        _ => "email",
    }
}

/// Everything needed to start a conversation.
#[derive(Debug, Clone)]
pub(crate) struct ConversationStart {
    /// Unique within the tenant; the conversation id is `c{key}`.
    pub(crate) key: String,
    pub(crate) at: i64,
    pub(crate) topic: usize,
    pub(crate) customer: u64,
    pub(crate) channel: Option<&'static str>,
    pub(crate) order: Option<Order>,
    /// Earlier conversations of this customer's cross-channel chain.
    pub(crate) chain: u32,
}

impl ConversationStart {
    pub(crate) fn new(rng: &mut StdRng, key: String, at: i64, topic: usize) -> Self {
        Self {
            key,
            at,
            topic,
            customer: customers::draw(rng),
            channel: None,
            order: None,
            chain: 0,
        }
    }
}

/// Context shared by the conversations of one tenant.
pub(crate) struct TenantView<'a> {
    pub(crate) name: &'a str,
    pub(crate) roster: &'a Roster,
    /// Relative load at a time (1 = weekly mean), for queue waits.
    pub(crate) load: &'a dyn Fn(i64) -> f64,
}

/// How the conversation ended, for CSAT and return visits.
#[derive(PartialEq)]
enum End {
    Solved { bad: bool },
    Unresolved,
    Abandoned,
}

struct Conversation<'a, 'o> {
    tenant: &'a TenantView<'a>,
    out: &'o mut Vec<Event>,
    id: String,
    ticket_id: Option<String>,
    channel: &'static str,
    team: &'static str,
    priority: &'static str,
    who: Identity,
    order: Option<Order>,
    topic: &'static Topic,
    now: i64,
    k: u32,
    agent: usize,
}

/// Simulates one conversation into `out`; returns the customer's next
/// conversation on another channel, if they come back.
pub(crate) fn simulate(
    rng: &mut StdRng,
    tenant: &TenantView<'_>,
    start: &ConversationStart,
    out: &mut Vec<Event>,
) -> Option<ConversationStart> {
    let channel = start
        .channel
        .unwrap_or_else(|| CHANNELS[weighted(rng, &CHANNEL_WEIGHTS)]);
    let topic = &TOPICS[start.topic.min(TOPICS.len() - 1)];
    let ticket_id = matches!(channel, "email" | "web_form" | "api" | "voice")
        .then(|| format!("T-{}", start.key));
    let new_contact = start.chain > 0 && rng.random_bool(0.35);
    let who = customers::identity(rng, start.customer, channel, new_contact);
    let mut c = Conversation {
        tenant,
        out,
        id: format!("c{}", start.key),
        ticket_id,
        channel,
        team: topic.team,
        priority: PRIORITIES[weighted(rng, &PRIORITY_WEIGHTS)],
        who,
        order: start.order.clone(),
        topic,
        now: start.at,
        k: 0,
        agent: 0,
    };
    let end = c.run(rng);
    let p_return = match end {
        End::Abandoned => 0.4,
        End::Unresolved => 0.3,
        End::Solved { bad: true } => 0.2,
        End::Solved { bad: false } => 0.06,
    } / f64::from(1 + 2 * start.chain);
    if start.chain >= 3 || !rng.random_bool(p_return) {
        return None;
    }
    let gap = if end == End::Abandoned {
        30 * MINUTE
    } else {
        5 * HOUR
    };
    Some(ConversationStart {
        key: format!("{}f", start.key),
        at: c.now + lognormal(rng, gap, 1.0, 3 * DAY),
        topic: start.topic,
        customer: start.customer,
        channel: Some(next_channel(channel)),
        order: start.order.clone(),
        chain: start.chain + 1,
    })
}

impl Conversation<'_, '_> {
    fn run(&mut self, rng: &mut StdRng) -> End {
        self.created(rng);
        self.wait(rng.random_range(1_000..8_000) * 1_000);
        let mut opener = pick(rng, self.topic.openers).to_string();
        if let Some(order) = &self.order {
            opener.push_str(&format!(" Order {}.", order.id));
        }
        self.customer_message(&opener);
        if has_bot(self.channel) && rng.random_bool(0.45) {
            match self.bot(rng) {
                BotEnd::Handoff => {}
                BotEnd::Resolved => {
                    self.status("solved", "bot", None);
                    self.csat(rng, false);
                    return End::Solved { bad: false };
                }
                BotEnd::DropOff => {
                    self.wait(DAY);
                    self.status("closed", "system", None);
                    return End::Abandoned;
                }
            }
        } else if has_bot(self.channel) && rng.random_bool(0.05) {
            if rng.random_bool(0.5) {
                self.wait(rng.random_range(60..240) * SECOND);
                self.customer_message(pick(rng, CUSTOMER_NUDGE));
            }
            return End::Abandoned;
        }
        self.human(rng)
    }

    fn created(&mut self, rng: &mut StdRng) {
        let tags = match rng.random_range(0..10) {
            0..=2 => Some(vec![self.topic.name.to_string()]),
            3 => Some(vec!["vip".to_string(), self.topic.name.to_string()]),
            _ => None,
        };
        let mut e = self.event("conversation.created");
        e.actor_type = Some("customer".into());
        e.priority = Some(self.priority.into());
        e.team_id = Some(self.team.into());
        self.identify(&mut e);
        e.store = self.order.as_ref().map(|o| o.store.into());
        e.order_id = self.order.as_ref().map(|o| o.id.clone());
        e.tags = tags;
        self.push(e);
        if rng.random_bool(0.35) {
            let at = self.now + rng.random_range(300..2_000) * 1_000;
            self.automation(rng, "auto-tag", at, 40..900, 0.02);
        }
    }

    fn bot(&mut self, rng: &mut StdRng) -> BotEnd {
        let bot = if matches!(self.topic.name, "refund" | "delivery") {
            "order-bot"
        } else {
            "assist-bot"
        };
        self.wait(rng.random_range(500..2_000) * 1_000);
        self.bot_event("bot.session_started", bot, None);
        self.wait(rng.random_range(1_000..3_000) * 1_000);
        self.bot_message(bot, pick(rng, BOT_GREETING));
        self.bot_event("bot.replied", bot, Some(rng.random_range(0.6..0.99)));
        for _ in 0..rng.random_range(0..3) {
            self.wait(delay(rng, 25 * SECOND));
            self.customer_message(pick(rng, CUSTOMER_NEUTRAL));
            self.wait(rng.random_range(1_000..3_000) * 1_000);
            if rng.random_bool(0.25) {
                self.bot_message(bot, pick(rng, BOT_FALLBACK));
                self.bot_event("bot.fallback", bot, Some(rng.random_range(0.05..0.4)));
            } else {
                self.bot_message(bot, pick(rng, self.topic.agent_replies));
                self.bot_event("bot.replied", bot, Some(rng.random_range(0.55..0.99)));
            }
        }
        self.wait(delay(rng, 30 * SECOND));
        let roll: f64 = rng.random();
        if roll < 0.35 {
            self.customer_message(pick(rng, CUSTOMER_POSITIVE));
            self.wait(2 * SECOND);
            self.bot_message(bot, pick(rng, BOT_RESOLVED));
            self.bot_event("bot.resolved", bot, None);
            BotEnd::Resolved
        } else if roll < 0.85 {
            self.customer_message(pick(rng, CUSTOMER_WANTS_HUMAN));
            self.wait(2 * SECOND);
            self.bot_message(bot, pick(rng, BOT_HANDOFF));
            self.bot_event("bot.handoff", bot, None);
            BotEnd::Handoff
        } else {
            BotEnd::DropOff
        }
    }

    /// Queue, assignment and the agent conversation up to solve (or not).
    fn human(&mut self, rng: &mut StdRng) -> End {
        let pace = pace(self.channel);
        let priority_factor = match self.priority {
            "urgent" => 0.35,
            "high" => 0.6,
            "low" => 1.5,
            _ => 1.0,
        };
        let load = (self.tenant.load)(self.now);
        let median = pace.queue as f64 * priority_factor * (0.5 + 0.5 * load);
        let wait = delay(rng, median as i64);
        if matches!(self.priority, "high" | "normal")
            && wait > 3 * pace.queue
            && rng.random_bool(0.5)
        {
            // The SLA escalation rule fires while the conversation waits.
            let at = self.now + wait / 2;
            self.automation(rng, "sla-escalation", at, 80..600, 0.01);
            let raised = if self.priority == "high" {
                "urgent"
            } else {
                "high"
            };
            let saved = std::mem::replace(&mut self.now, at + SECOND);
            self.priority_changed(raised, "system");
            self.now = saved;
        }
        self.wait(wait);
        self.assign(rng, None);
        self.wait(delay(rng, pace.first_reply));
        if rng.random_bool(0.05) {
            self.note(rng);
        }
        self.agent_message(self.agent, pick(rng, self.topic.agent_replies), true);
        if rng.random_bool(0.05) {
            // Agents mostly raise priority once they understand the issue.
            self.wait(rng.random_range(5..90) * SECOND);
            let p = match self.priority {
                "low" => "normal",
                "normal" => "high",
                "high" => "urgent",
                _ => "high",
            };
            self.priority_changed(p, "agent");
        }
        let (mut handed_off, mut transferred, mut collided, mut reopened) =
            (false, false, false, false);
        let mut rounds = 0;
        while rounds < 5 && rng.random_bool(0.55) {
            rounds += 1;
            let pending = self.channel != "voice" && rng.random_bool(0.2);
            if pending {
                self.status("pending", "agent", Some(self.agent));
            }
            self.wait(delay(rng, pace.customer_reply));
            let body = match rng.random_range(0..10) {
                0..=3 => pick(rng, CUSTOMER_NEUTRAL),
                4..=7 => pick(rng, CUSTOMER_NEGATIVE),
                _ => pick(rng, CUSTOMER_POSITIVE),
            };
            self.customer_message(body);
            if pending {
                self.status("open", "system", None);
            }
            if rng.random_bool(0.08) {
                self.wait(delay(rng, pace.agent_reply / 3));
                self.note(rng);
            }
            if !handed_off && rng.random_bool(0.1) {
                handed_off = true;
                self.wait(delay(rng, pace.agent_reply / 2));
                self.assign(rng, Some(self.agent));
            } else if !transferred && rng.random_bool(0.06) {
                transferred = true;
                self.wait(delay(rng, pace.agent_reply / 2));
                self.transfer(rng);
            }
            self.wait(delay(rng, pace.agent_reply));
            self.agent_message(self.agent, pick(rng, AGENT_GENERIC), true);
            if !collided && rng.random_bool(0.04) {
                collided = true;
                let (other, _) = self
                    .tenant
                    .roster
                    .find_agent(rng, "", self.now, Some(self.agent));
                self.wait(rng.random_range(5..50) * SECOND);
                self.agent_message(other, "Hi! Jumping in, I can help with this.", true);
            }
        }
        if rng.random_bool(0.08) {
            if rng.random_bool(0.5) {
                self.status("pending", "agent", Some(self.agent));
            }
            return End::Unresolved;
        }
        if rng.random_bool(0.6) {
            self.wait(delay(rng, pace.customer_reply));
            self.customer_message(pick(rng, CUSTOMER_POSITIVE));
        }
        self.wait(delay(rng, pace.solve));
        self.status("solved", "agent", Some(self.agent));
        self.refund(rng);
        if rng.random_bool(0.08) {
            reopened = true;
            self.wait(lognormal(rng, 10 * HOUR, 1.0, 3 * DAY));
            self.customer_message(pick(rng, CUSTOMER_REOPEN));
            self.status("open", "system", None);
            self.wait(delay(rng, pace.first_reply + pace.queue));
            if !self.tenant.roster.on_shift(self.agent, self.now) {
                self.assign(rng, Some(self.agent));
            }
            self.agent_message(self.agent, pick(rng, self.topic.agent_replies), true);
            self.wait(delay(rng, pace.solve));
            self.status("solved", "agent", Some(self.agent));
        }
        let bad = reopened || wait > 6 * pace.queue;
        self.csat(rng, bad);
        End::Solved { bad }
    }

    fn event(&mut self, event_type: &str) -> Event {
        self.k += 1;
        Event {
            tenant_id: self.tenant.name.to_string(),
            event_id: format!("{}-{}-{}", self.tenant.name, self.id, self.k),
            event_time: self.now,
            event_type: event_type.into(),
            channel: Some(self.channel.into()),
            conversation_id: Some(self.id.clone()),
            ticket_id: self.ticket_id.clone(),
            ..Default::default()
        }
    }

    fn push(&mut self, e: Event) {
        self.out.push(e);
    }

    /// Moves the conversation clock on; at least 1 ms so that its events
    /// keep their order.
    fn wait(&mut self, us: i64) {
        self.now += us.max(1_000);
    }

    fn identify(&self, e: &mut Event) {
        e.customer_id = self.who.customer_id.clone();
        e.customer_email = self.who.email.clone();
        e.customer_phone = self.who.phone.clone();
    }

    fn customer_message(&mut self, body: &str) {
        let mut e = self.event("message.created");
        e.actor_type = Some("customer".into());
        self.identify(&mut e);
        e.message_id = Some(format!("m-{}-{}", self.id, self.k));
        e.body = Some(body.into());
        e.is_public = Some(true);
        e.order_id = self.order.as_ref().map(|o| o.id.clone());
        self.push(e);
    }

    fn agent_message(&mut self, agent: usize, body: &str, public: bool) {
        let mut e = self.event("message.created");
        e.actor_type = Some("agent".into());
        e.agent_id = Some(self.agent_id(agent));
        e.team_id = Some(self.team.into());
        e.message_id = Some(format!("m-{}-{}", self.id, self.k));
        e.body = Some(body.into());
        e.is_public = Some(public);
        self.push(e);
    }

    fn note(&mut self, rng: &mut StdRng) {
        self.agent_message(self.agent, pick(rng, INTERNAL_NOTES), false);
    }

    fn bot_message(&mut self, bot: &str, body: &str) {
        let mut e = self.event("message.created");
        e.actor_type = Some("bot".into());
        e.bot_id = Some(bot.into());
        e.message_id = Some(format!("m-{}-{}", self.id, self.k));
        e.body = Some(body.into());
        e.is_public = Some(true);
        self.push(e);
    }

    fn bot_event(&mut self, event_type: &str, bot: &str, confidence: Option<f64>) {
        let mut e = self.event(event_type);
        e.actor_type = Some("bot".into());
        e.bot_id = Some(bot.into());
        e.confidence = confidence;
        if event_type != "bot.session_started" {
            e.intent = Some(self.topic.intent.into());
        }
        self.push(e);
    }

    fn agent_id(&self, agent: usize) -> String {
        self.tenant
            .roster
            .agents
            .get(agent)
            .map_or_else(|| format!("agent-{}", agent + 1), |a| a.id.clone())
    }

    /// Assigns the conversation to whoever is on shift (waiting for the next
    /// shift at night); `from` is the agent handing it off.
    fn assign(&mut self, rng: &mut StdRng, from: Option<usize>) {
        let (agent, at) = self
            .tenant
            .roster
            .find_agent(rng, self.team, self.now, from);
        self.now = self.now.max(at);
        self.agent = agent;
        let mut e = self.event("conversation.assigned");
        e.actor_type = Some(if from.is_some() { "agent" } else { "system" }.into());
        e.agent_id = Some(self.agent_id(agent));
        e.team_id = Some(self.team.into());
        self.push(e);
    }

    /// Moves the conversation to another team, or from a live channel to
    /// email or a call, then assigns it there.
    fn transfer(&mut self, rng: &mut StdRng) {
        let mut e = self.event("conversation.transferred");
        e.actor_type = Some("agent".into());
        e.agent_id = Some(self.agent_id(self.agent));
        if pace(self.channel).queue < 10 * MINUTE && rng.random_bool(0.4) {
            self.channel = if rng.random_bool(0.5) {
                "email"
            } else {
                "voice"
            };
            e.channel = Some(self.channel.into());
        } else {
            let others: Vec<&'static str> = TEAMS.into_iter().filter(|t| *t != self.team).collect();
            self.team = pick(rng, &others);
        }
        e.team_id = Some(self.team.into());
        self.push(e);
        self.wait(rng.random_range(10..120) * SECOND);
        self.assign(rng, Some(self.agent));
    }

    fn status(&mut self, status: &str, actor: &str, agent: Option<usize>) {
        let mut e = self.event("conversation.status_changed");
        e.actor_type = Some(actor.into());
        e.agent_id = agent.map(|a| self.agent_id(a));
        e.status = Some(status.into());
        self.push(e);
    }

    fn priority_changed(&mut self, priority: &'static str, actor: &str) {
        self.priority = priority;
        let mut e = self.event("conversation.priority_changed");
        e.actor_type = Some(actor.into());
        e.priority = Some(priority.into());
        if actor == "system" {
            e.workflow_id = Some("sla-escalation".into());
        }
        self.push(e);
    }

    fn automation(
        &mut self,
        rng: &mut StdRng,
        workflow: &str,
        at: i64,
        ms: std::ops::Range<i64>,
        fail_p: f64,
    ) {
        let template = self.event("automation.triggered");
        let second = format!("{}-{}-{}", self.tenant.name, self.id, self.k + 1);
        self.k += 1;
        let ids = [template.event_id.clone(), second];
        let [mut triggered, mut ended] =
            automation::run(rng, &template, workflow, at, ms, fail_p, ids);
        if workflow == "auto-tag" && ended.event_type == "automation.completed" {
            ended.tags = Some(vec![self.topic.name.to_string()]);
        }
        triggered.priority = Some(self.priority.into());
        self.push(triggered);
        self.push(ended);
    }

    /// A solved refund conversation about an order refunds it in the store.
    fn refund(&mut self, rng: &mut StdRng) {
        let Some(order) = self.order.clone() else {
            return;
        };
        if self.topic.name != "refund" || !rng.random_bool(0.7) {
            return;
        }
        let mut e = self.event("order.refunded");
        e.actor_type = Some("agent".into());
        e.agent_id = Some(self.agent_id(self.agent));
        e.customer_email = self.who.email.clone();
        e.store = Some(order.store.into());
        e.order_id = Some(order.id);
        e.order_total = Some(order.total);
        e.currency = Some(order.currency.into());
        e.tags = Some(vec!["refund".into()]);
        self.push(e);
    }

    /// A share of solved conversations get a survey; scores skew positive,
    /// less so after a reopen or a long wait. Rarely also an NPS answer.
    fn csat(&mut self, rng: &mut StdRng, bad: bool) {
        if rng.random_bool(0.35) {
            let at = self.now + rng.random_range(1..5) * SECOND;
            self.automation(rng, "csat-survey", at, 100..1_500, 0.02);
            self.wait(lognormal(rng, 40 * MINUTE, 1.2, DAY));
            let weights = if bad {
                [20, 15, 20, 25, 20]
            } else {
                [5, 4, 9, 25, 57]
            };
            let score = weighted(rng, &weights) as i32 + 1;
            let comment = match (score, rng.random_bool(0.5)) {
                (_, false) => None,
                (4.., true) => Some(pick(rng, CSAT_GOOD)),
                (_, true) => Some(pick(rng, CSAT_BAD)),
            };
            let mut e = self.event("csat.submitted");
            e.actor_type = Some("customer".into());
            self.identify(&mut e);
            e.csat_score = Some(score);
            e.body = comment.map(str::to_string);
            self.push(e);
        }
        if rng.random_bool(0.015) {
            self.wait(lognormal(rng, 2 * HOUR, 1.0, 2 * DAY));
            let mut e = self.event("custom.nps_survey");
            e.actor_type = Some("customer".into());
            self.identify(&mut e);
            e.attributes = Some(serde_json::json!({ "nps": rng.random_range(0..=10) }).to_string());
            self.push(e);
        }
    }
}

enum BotEnd {
    Resolved,
    Handoff,
    DropOff,
}
