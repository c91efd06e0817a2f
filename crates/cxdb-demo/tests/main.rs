//! Integration tests for `cxdb-demo`: validity, determinism, ordering,
//! seasonality, volume and conversation lifecycles of the generated traffic.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use cxdb_demo::{DemoConfig, DemoGenerator};
use cxdb_model::{Event, vocab};

const SECOND: i64 = 1_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// Monday 2026-03-02 00:00:00 UTC (2026-01-01 is a Thursday, 60 days earlier).
const MONDAY: i64 = 1_767_225_600_000_000 + 60 * DAY;

/// One `advance_to` call: its window and what it returned.
struct Window {
    from: i64,
    to: i64,
    events: Vec<Event>,
}

/// Three days (Monday to Wednesday) of the default configuration, starting
/// mid-minute, fetched in 10-minute windows; shared by the tests.
fn three_days() -> &'static [Window] {
    static DATA: OnceLock<Vec<Window>> = OnceLock::new();
    DATA.get_or_init(|| {
        let start = MONDAY + 37 * SECOND + 123_456;
        let mut generator = DemoGenerator::new(DemoConfig::default(), start);
        let mut windows = Vec::new();
        let mut from = start;
        while from < start + 3 * DAY {
            let to = from + 10 * MINUTE;
            let events = generator.advance_to(to);
            windows.push(Window { from, to, events });
            from = to;
        }
        windows
    })
}

fn all_events() -> impl Iterator<Item = &'static Event> {
    three_days().iter().flat_map(|w| w.events.iter())
}

/// Events per conversation (tenant, conversation_id), in time order.
fn conversations() -> HashMap<(&'static str, &'static str), Vec<&'static Event>> {
    let mut map: HashMap<_, Vec<_>> = HashMap::new();
    for e in all_events() {
        if let Some(c) = &e.conversation_id {
            map.entry((e.tenant_id.as_str(), c.as_str()))
                .or_default()
                .push(e);
        }
    }
    map
}

fn is_public_agent_message(e: &Event) -> bool {
    e.event_type == "message.created"
        && e.actor_type.as_deref() == Some("agent")
        && e.is_public == Some(true)
}

#[test]
fn every_event_is_valid_and_every_type_and_channel_occurs() {
    let mut types = BTreeSet::new();
    let mut channels = BTreeSet::new();
    for (i, e) in all_events().enumerate() {
        let mut e = e.clone();
        assert_eq!(e.validate(i), Ok(()), "{e:?}");
        types.insert(e.event_type.clone());
        channels.extend(e.channel.clone());
    }
    for (event_type, _) in vocab::EVENT_TYPES {
        assert!(types.contains(*event_type), "no {event_type} in {types:?}");
    }
    assert!(types.contains("custom.nps_survey"), "{types:?}");
    for channel in vocab::CHANNELS {
        assert!(channels.contains(*channel), "no {channel} in {channels:?}");
    }
}

#[test]
fn same_seed_same_events_whatever_the_windows() {
    // Callers move the generator into a streaming task.
    fn assert_send<T: Send>() {}
    assert_send::<DemoGenerator>();

    let start = MONDAY + 12 * HOUR + 30 * SECOND;
    let config = |seed| DemoConfig {
        seed,
        ..DemoConfig::default()
    };
    let one_call = DemoGenerator::new(config(7), start).advance_to(start + DAY);
    assert!(one_call.len() > 10_000, "{}", one_call.len());

    let mut by_minute = Vec::new();
    let mut generator = DemoGenerator::new(config(7), start);
    for i in 1..=1440 {
        by_minute.extend(generator.advance_to(start + i * MINUTE));
    }
    assert!(one_call == by_minute, "1 call and 1440 calls differ");

    // Odd window sizes, including empty and backwards ones.
    let mut odd = Vec::new();
    let mut generator = DemoGenerator::new(config(7), start);
    let mut to = start;
    while to < start + DAY {
        to = (to + 97 * SECOND + 3 * (to % 1_000)).min(start + DAY);
        odd.extend(generator.advance_to(to));
        assert!(generator.advance_to(to - SECOND).is_empty());
    }
    assert!(one_call == odd, "1 call and odd windows differ");

    let other_seed = DemoGenerator::new(config(8), start).advance_to(start + DAY);
    assert!(one_call != other_seed);
}

#[test]
fn ids_unique_per_tenant_and_events_ordered_within_windows() {
    let mut ids = HashSet::new();
    let mut last = i64::MIN;
    for w in three_days() {
        for e in &w.events {
            assert!(
                ids.insert((e.tenant_id.as_str(), e.event_id.as_str())),
                "duplicate {} {}",
                e.tenant_id,
                e.event_id
            );
            assert!(
                (w.from..w.to).contains(&e.event_time),
                "{e:?} outside window"
            );
            assert!(e.event_time >= last, "{e:?} out of order");
            last = e.event_time;
        }
    }
    assert!(ids.len() > 100_000, "{}", ids.len());
}

fn created_times(events: impl Iterator<Item = &'static Event>) -> Vec<i64> {
    events
        .filter(|e| e.event_type == "conversation.created")
        .map(|e| e.event_time)
        .collect()
}

#[test]
fn weekday_late_mornings_are_busier_than_nights() {
    let created = created_times(all_events());
    let in_hours = |from: i64, to: i64| {
        created
            .iter()
            .filter(|&&t| (from * HOUR..to * HOUR).contains(&t.rem_euclid(DAY)))
            .count()
    };
    let (morning, night) = (in_hours(10, 12), in_hours(2, 4));
    assert!(morning >= 3 * night, "10-12 h: {morning}, 02-04 h: {night}");
}

/// Conversations created per day over one week from Monday, one tenant.
fn week_per_day() -> &'static [usize] {
    static DATA: OnceLock<Vec<usize>> = OnceLock::new();
    DATA.get_or_init(|| {
        let config = DemoConfig {
            tenants: vec!["acme".into()],
            ..DemoConfig::default()
        };
        let mut generator = DemoGenerator::new(config, MONDAY);
        (1..=7)
            .map(|d| {
                let events = generator.advance_to(MONDAY + d * DAY);
                events
                    .iter()
                    .filter(|e| e.event_type == "conversation.created")
                    .count()
            })
            .collect()
    })
}

#[test]
fn weekdays_are_busier_than_weekends() {
    let days = week_per_day();
    let weekday = days[..5].iter().sum::<usize>() / 5;
    let weekend = days[5..].iter().sum::<usize>() / 2;
    assert!(weekday as f64 > 1.4 * weekend as f64, "{days:?}");
}

#[test]
fn default_volume_is_about_120_conversations_an_hour() {
    // 120/h at the weekly mean = 2880 a day on average; weekdays run above
    // it and weekends below, spikes and return visits add a little.
    let days = week_per_day();
    for &n in days {
        assert!((1_200..=5_000).contains(&n), "{days:?}");
    }
    let mean = days.iter().sum::<usize>() as f64 / 7.0;
    assert!((2_450.0..=3_300.0).contains(&mean), "mean {mean}, {days:?}");
}

#[test]
fn conversation_lifecycles_are_plausible() {
    let conversations = conversations();
    let (mut solved, mut reopened, mut transferred, mut notes, mut collisions, mut csat) =
        (0, 0, 0, 0, 0, 0);
    let mut first_response: HashMap<&str, Vec<i64>> = HashMap::new();
    for events in conversations.values() {
        let Some(created) = events
            .iter()
            .find(|e| e.event_type == "conversation.created")
        else {
            continue; // an order-sync run or a refund linked to no conversation
        };
        let statuses: Vec<&str> = events
            .iter()
            .filter_map(|e| {
                (e.event_type == "conversation.status_changed").then_some(e.status.as_deref()?)
            })
            .collect();
        let first_reply = events.iter().find(|e| is_public_agent_message(e));
        if statuses.contains(&"solved") {
            solved += 1;
            if let Some(reply) = first_reply {
                assert!(reply.event_time > created.event_time, "{reply:?}");
            }
        }
        if let Some(reply) = first_reply {
            let channel = created.channel.as_deref().unwrap();
            first_response
                .entry(channel)
                .or_default()
                .push(reply.event_time - created.event_time);
        }
        if statuses.windows(2).any(|w| w == ["solved", "open"]) {
            reopened += 1;
        }
        if events
            .iter()
            .any(|e| e.event_type == "conversation.transferred")
        {
            transferred += 1;
        }
        if events
            .iter()
            .any(|e| e.event_type == "message.created" && e.is_public == Some(false))
        {
            notes += 1;
        }
        if events.iter().any(|e| e.event_type == "csat.submitted") {
            csat += 1;
        }
        // SPEC §3: two distinct agents post publicly within 60 s, no
        // customer message between.
        let messages: Vec<&&Event> = events
            .iter()
            .filter(|e| {
                e.event_type == "message.created"
                    && (is_public_agent_message(e) || e.actor_type.as_deref() == Some("customer"))
            })
            .collect();
        if messages.windows(2).any(|w| {
            is_public_agent_message(w[0])
                && is_public_agent_message(w[1])
                && w[0].agent_id != w[1].agent_id
                && w[1].event_time - w[0].event_time <= 60 * SECOND
        }) {
            collisions += 1;
        }
    }
    let total = conversations.len();
    assert!(solved * 10 > total * 6, "{solved} of {total} solved");
    for (what, n) in [
        ("reopened", reopened),
        ("transferred", transferred),
        ("internal notes", notes),
        ("collisions", collisions),
        ("csat", csat),
    ] {
        assert!(n * 200 > solved, "{what}: {n} of {solved} solved");
    }
    let median = |channel: &str| {
        let mut v = first_response[channel].clone();
        v.sort_unstable();
        v[v.len() / 2]
    };
    assert!(median("chat") < 10 * MINUTE, "chat {}", median("chat"));
    assert!(median("email") > 30 * MINUTE, "email {}", median("email"));
    assert!(median("email") > 10 * median("chat"));
}

#[test]
fn order_conversations_follow_their_orders() {
    let mut orders = HashMap::new();
    for e in all_events().filter(|e| e.event_type == "order.created") {
        orders.insert(
            (e.tenant_id.as_str(), e.order_id.as_deref().unwrap()),
            e.event_time,
        );
    }
    let mut linked = 0;
    for e in all_events().filter(|e| e.event_type == "conversation.created") {
        if let Some(order) = &e.order_id {
            let placed = orders[&(e.tenant_id.as_str(), order.as_str())];
            assert!((0..=7 * DAY).contains(&(e.event_time - placed)), "{e:?}");
            linked += 1;
        }
    }
    assert!(linked > 100, "{linked}");
}

#[test]
fn returning_customers_switch_channels_and_sometimes_contact_ids() {
    // Lower-cased email → (channels, customer ids) of its conversations.
    type ChannelsAndIds = (BTreeSet<&'static str>, BTreeSet<&'static str>);
    let mut by_email: HashMap<(String, String), ChannelsAndIds> = HashMap::new();
    for e in all_events().filter(|e| e.event_type == "conversation.created") {
        if let (Some(email), Some(channel), Some(id)) =
            (&e.customer_email, &e.channel, &e.customer_id)
        {
            let entry = by_email
                .entry((e.tenant_id.clone(), email.to_lowercase()))
                .or_default();
            entry.0.insert(channel);
            entry.1.insert(id);
        }
    }
    let multi_channel = by_email.values().filter(|(c, _)| c.len() > 1).count();
    let multi_id = by_email.values().filter(|(_, ids)| ids.len() > 1).count();
    assert!(multi_channel > 200, "{multi_channel}");
    assert!(multi_id > 20, "{multi_id}");
}

#[test]
fn agents_follow_shifts_and_invalid_config_is_reported() {
    let status: Vec<&Event> = all_events()
        .filter(|e| e.event_type == "agent.status_changed" && e.tenant_id == "acme")
        .collect();
    let agents: BTreeSet<&str> = status
        .iter()
        .filter_map(|e| e.agent_id.as_deref())
        .collect();
    assert!((8..=15).contains(&agents.len()), "{agents:?}");
    for s in ["online", "away", "busy", "offline"] {
        assert!(status.iter().any(|e| e.status.as_deref() == Some(s)), "{s}");
    }

    assert_eq!(DemoConfig::default().validate(), Ok(()));
    let bad = DemoConfig {
        tenants: vec!["Acme Corp".into()],
        ..DemoConfig::default()
    };
    assert!(bad.validate().is_err());
}
