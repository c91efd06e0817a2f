//! The closed vocabularies of SPEC §2: event types and the enums of
//! `channel`, `actor_type`, `status`, `priority` and `store`.

pub const CHANNELS: &[&str] = &[
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
pub const ACTOR_TYPES: &[&str] = &["customer", "agent", "bot", "system"];
pub const CONVERSATION_STATUSES: &[&str] = &["open", "pending", "on_hold", "solved", "closed"];
pub const AGENT_STATUSES: &[&str] = &["online", "away", "busy", "offline"];
pub const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
pub const STORES: &[&str] = &["shopify", "woocommerce"];

/// Prefix of event types that are accepted, kept and never interpreted.
pub const CUSTOM_PREFIX: &str = "custom.";

/// Every known event type with the fields it requires beyond the always
/// required `tenant_id`, `event_id`, `event_time` and `event_type`.
pub const EVENT_TYPES: &[(&str, &[&str])] = &[
    ("conversation.created", &["conversation_id", "channel"]),
    ("message.created", &["conversation_id", "actor_type"]),
    ("conversation.assigned", &["conversation_id", "agent_id"]),
    ("conversation.transferred", &["conversation_id"]),
    (
        "conversation.status_changed",
        &["conversation_id", "status"],
    ),
    (
        "conversation.priority_changed",
        &["conversation_id", "priority"],
    ),
    ("csat.submitted", &["conversation_id", "csat_score"]),
    ("bot.session_started", &["conversation_id", "bot_id"]),
    ("bot.replied", &["conversation_id", "bot_id"]),
    ("bot.fallback", &["conversation_id", "bot_id"]),
    ("bot.handoff", &["conversation_id", "bot_id"]),
    ("bot.resolved", &["conversation_id", "bot_id"]),
    ("automation.triggered", &["workflow_id"]),
    ("automation.completed", &["workflow_id"]),
    ("automation.failed", &["workflow_id"]),
    ("agent.status_changed", &["agent_id", "status"]),
    ("order.created", &["store", "order_id"]),
    ("order.updated", &["store", "order_id"]),
    ("order.refunded", &["store", "order_id"]),
];

/// The fields `event_type` requires, or `None` when the type is unknown.
/// `custom.*` types require nothing.
pub fn required_fields(event_type: &str) -> Option<&'static [&'static str]> {
    if event_type.len() > CUSTOM_PREFIX.len() && event_type.starts_with(CUSTOM_PREFIX) {
        return Some(&[]);
    }
    EVENT_TYPES
        .iter()
        .find(|(name, _)| *name == event_type)
        .map(|(_, req)| *req)
}

/// `[a-z0-9][a-z0-9_-]{0,63}`
pub fn is_valid_tenant_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b[1..]
            .iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
}
