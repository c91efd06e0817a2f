//! A tenant's agents: teams, daily shifts with breaks, the
//! `agent.status_changed` events those shifts produce, and who is on shift
//! to take a conversation.

use cxdb_model::Event;
use rand::Rng;

use crate::random::{DAY, HOUR, MINUTE, Stream, hash, rng_for};
use crate::seasonality::weekday;

pub(crate) const TEAMS: [&str; 3] = ["billing", "tech", "sales"];

#[derive(Debug, Clone)]
pub(crate) struct Agent {
    pub(crate) id: String,
    pub(crate) team: &'static str,
}

/// The agents of one tenant and their shift pattern.
#[derive(Debug, Clone)]
pub(crate) struct Roster {
    seed: u64,
    tenant: u64,
    pub(crate) agents: Vec<Agent>,
}

impl Roster {
    pub(crate) fn new(seed: u64, tenant: u64) -> Self {
        let n = 8 + (hash(seed, tenant, Stream::Shift, &[-1]) % 8) as usize;
        let agents = (0..n)
            .map(|i| Agent {
                id: format!("agent-{}", i + 1),
                team: TEAMS[i % TEAMS.len()],
            })
            .collect();
        Self {
            seed,
            tenant,
            agents,
        }
    }

    /// The shift agent `i` starts on `day` (days since the epoch), if any.
    /// Night shifts run 22:00–07:00; day shifts start at 06, 07, 10 or 14 h
    /// for 8 hours; at weekends only the night, 07 h and 14 h shifts work, so
    /// every hour stays covered.
    fn shift(&self, i: usize, day: i64) -> Option<(i64, i64)> {
        let h = hash(self.seed, self.tenant, Stream::Shift, &[day, i as i64]);
        let (start_h, len_h) = match (i % 8, i % 4) {
            (0, _) => (22, 9),
            (_, 1) => (6, 8),
            (_, 2) => (10, 8),
            (_, 3) => (14, 8),
            _ => (7, 8),
        };
        let weekend = weekday(day * DAY) >= 5;
        if (weekend && matches!(start_h, 6 | 10)) || h % 100 < 5 {
            return None;
        }
        let jitter = (h >> 8) as i64 % (41 * MINUTE) - 20 * MINUTE;
        let start = day * DAY + start_h * HOUR + jitter;
        Some((start, start + len_h * HOUR))
    }

    /// The status transitions of agent `i`'s shift starting on `day`:
    /// online, sometimes busy for a while, a lunch break, offline.
    fn transitions(&self, i: usize, day: i64) -> Vec<(i64, &'static str)> {
        let Some((start, end)) = self.shift(i, day) else {
            return Vec::new();
        };
        let mut rng = rng_for(self.seed, self.tenant, Stream::AgentDay, &[day, i as i64]);
        let mut out = vec![(start, "online")];
        if rng.random_bool(0.4) {
            let busy = start + rng.random_range(90..180) * MINUTE;
            out.push((busy, "busy"));
            out.push((busy + rng.random_range(15..50) * MINUTE, "online"));
        }
        let lunch = start + rng.random_range(230..270) * MINUTE;
        out.push((lunch, "away"));
        out.push((lunch + rng.random_range(25..45) * MINUTE, "online"));
        out.push((end, "offline"));
        out
    }

    pub(crate) fn on_shift(&self, i: usize, t: i64) -> bool {
        let day = t.div_euclid(DAY);
        [day - 1, day]
            .iter()
            .filter_map(|&d| self.shift(i, d))
            .any(|(s, e)| (s..e).contains(&t))
    }

    /// An agent to take a conversation of `team` at `t`, and when: someone
    /// of the team on shift, else anyone on shift, else whoever comes on
    /// shift first. `exclude` is the agent handing the conversation off.
    pub(crate) fn find_agent(
        &self,
        rng: &mut impl Rng,
        team: &str,
        t: i64,
        exclude: Option<usize>,
    ) -> (usize, i64) {
        let candidates = |t: i64, same_team: bool| -> Vec<usize> {
            (0..self.agents.len())
                .filter(|&i| Some(i) != exclude && self.on_shift(i, t))
                .filter(|&i| !same_team || self.agents[i].team == team)
                .collect()
        };
        let mut at = t;
        while at < t + 2 * DAY {
            for same_team in [true, false] {
                let c = candidates(at, same_team);
                if !c.is_empty() {
                    return (c[rng.random_range(0..c.len())], at);
                }
            }
            at += 10 * MINUTE;
        }
        let any = (0..self.agents.len()).find(|&i| Some(i) != exclude);
        (any.unwrap_or(0), t)
    }

    /// `agent.status_changed` events with event_time in `[from, day end)` of
    /// `day`, from the shifts starting that day and the day before.
    pub(crate) fn day_events(&self, tenant: &str, day: i64, from: i64, out: &mut Vec<Event>) {
        let (lo, hi) = ((day * DAY).max(from), (day + 1) * DAY);
        for (i, agent) in self.agents.iter().enumerate() {
            for shift_day in [day - 1, day] {
                for (k, (t, status)) in self.transitions(i, shift_day).into_iter().enumerate() {
                    if (lo..hi).contains(&t) {
                        let id = format!("{tenant}-{}-s{shift_day}-{k}", agent.id);
                        out.push(status_event(tenant, id, t, agent, status));
                    }
                }
            }
        }
    }

    /// Every agent's status at `t` (as of just before it), so a stream that
    /// starts mid-shift still knows who is online.
    pub(crate) fn snapshot(&self, tenant: &str, t: i64, out: &mut Vec<Event>) {
        let day = t.div_euclid(DAY);
        for (i, agent) in self.agents.iter().enumerate() {
            let status = [day - 1, day]
                .iter()
                .flat_map(|&d| self.transitions(i, d))
                .filter(|&(at, _)| at < t)
                .max_by_key(|&(at, _)| at)
                .map_or("offline", |(_, s)| s);
            let id = format!("{tenant}-{}-at{t}", agent.id);
            out.push(status_event(tenant, id, t, agent, status));
        }
    }
}

fn status_event(tenant: &str, event_id: String, t: i64, agent: &Agent, status: &str) -> Event {
    Event {
        tenant_id: tenant.to_string(),
        event_id,
        event_time: t,
        event_type: "agent.status_changed".into(),
        actor_type: Some("agent".into()),
        agent_id: Some(agent.id.clone()),
        team_id: Some(agent.team.into()),
        status: Some(status.into()),
        ..Default::default()
    }
}
