use crate::error::EventError;
use crate::time::{MAX_EVENT_TIME_US, MIN_EVENT_TIME_US};
use crate::vocab;

/// One row of `events` (SPEC §2). Timestamps are epoch microseconds, UTC.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    pub tenant_id: String,
    pub event_id: String,
    pub event_time: i64,
    /// Set by the server on acceptance; whatever a client sends is overwritten.
    pub ingested_at: i64,
    pub event_type: String,
    pub channel: Option<String>,
    pub conversation_id: Option<String>,
    pub ticket_id: Option<String>,
    pub customer_id: Option<String>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    pub actor_type: Option<String>,
    pub agent_id: Option<String>,
    pub team_id: Option<String>,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub message_id: Option<String>,
    pub body: Option<String>,
    pub is_public: Option<bool>,
    pub csat_score: Option<i32>,
    pub bot_id: Option<String>,
    pub intent: Option<String>,
    pub confidence: Option<f64>,
    pub workflow_id: Option<String>,
    pub store: Option<String>,
    pub order_id: Option<String>,
    pub order_total: Option<f64>,
    pub currency: Option<String>,
    pub duration_ms: Option<i64>,
    pub tags: Option<Vec<String>>,
    pub attributes: Option<String>,
}

/// Longest accepted `event_id` (characters).
pub const MAX_EVENT_ID_CHARS: usize = 128;

/// The fields the rules of SPEC §2 look at, borrowed: from an [`Event`] or
/// from one row of an Arrow batch ([`crate::BatchFields`]), so both write
/// paths check with the same code.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventFields<'a> {
    pub tenant_id: &'a str,
    pub event_id: &'a str,
    pub event_time: i64,
    pub event_type: &'a str,
    pub channel: Option<&'a str>,
    pub conversation_id: Option<&'a str>,
    pub actor_type: Option<&'a str>,
    pub agent_id: Option<&'a str>,
    pub status: Option<&'a str>,
    pub priority: Option<&'a str>,
    pub csat_score: Option<i32>,
    pub bot_id: Option<&'a str>,
    pub confidence: Option<f64>,
    pub workflow_id: Option<&'a str>,
    pub store: Option<&'a str>,
    pub order_id: Option<&'a str>,
    pub order_total: Option<f64>,
    pub currency: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub attributes: Option<&'a str>,
}

impl EventFields<'_> {
    /// Checks the event against SPEC §2: identifiers, the event-type table,
    /// enums and ranges. `index` is the event's position in its request and
    /// is carried into the error.
    pub fn check(&self, index: usize) -> Result<(), EventError> {
        let id = (!self.event_id.is_empty()).then_some(self.event_id);
        let err = |field: &str, msg: String| Err(EventError::new(index, id, field, msg));

        if self.tenant_id.is_empty() {
            return err("tenant_id", "is required".into());
        }
        if !vocab::is_valid_tenant_id(self.tenant_id) {
            return err(
                "tenant_id",
                format!(
                    "{:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}",
                    truncate(self.tenant_id)
                ),
            );
        }
        let id_chars = self.event_id.chars().count();
        if id_chars == 0 {
            return err("event_id", "is required".into());
        }
        if id_chars > MAX_EVENT_ID_CHARS {
            return err(
                "event_id",
                format!("is {id_chars} characters long; at most {MAX_EVENT_ID_CHARS} are allowed"),
            );
        }
        if !(MIN_EVENT_TIME_US..MAX_EVENT_TIME_US).contains(&self.event_time) {
            return err(
                "event_time",
                format!(
                    "{} µs since the epoch is outside 1990-01-01..2200-01-01 (integers are epoch microseconds)",
                    self.event_time
                ),
            );
        }
        if self.event_type.is_empty() {
            return err("event_type", "is required".into());
        }
        let Some(required) = vocab::required_fields(self.event_type) else {
            return err(
                "event_type",
                format!(
                    "unknown event type {:?}; use a known type or the prefix \"custom.\"",
                    truncate(self.event_type)
                ),
            );
        };
        for field in required {
            if !self.has(field) {
                return err(field, format!("is required for {}", self.event_type));
            }
        }

        check_enum("channel", self.channel, vocab::CHANNELS).or_else(|m| err("channel", m))?;
        check_enum("actor_type", self.actor_type, vocab::ACTOR_TYPES)
            .or_else(|m| err("actor_type", m))?;
        check_enum("priority", self.priority, vocab::PRIORITIES).or_else(|m| err("priority", m))?;
        check_enum("store", self.store, vocab::STORES).or_else(|m| err("store", m))?;
        let statuses = if self.event_type == "agent.status_changed" {
            vocab::AGENT_STATUSES
        } else {
            vocab::CONVERSATION_STATUSES
        };
        check_enum("status", self.status, statuses).or_else(|m| err("status", m))?;

        if let Some(score) = self.csat_score
            && !(1..=5).contains(&score)
        {
            return err("csat_score", format!("{score} is outside 1..5"));
        }
        if let Some(c) = self.confidence
            && !(0.0..=1.0).contains(&c)
        {
            return err("confidence", format!("{c} is outside 0..1"));
        }
        if let Some(t) = self.order_total
            && !t.is_finite()
        {
            return err("order_total", "must be a finite number".into());
        }
        if let Some(d) = self.duration_ms
            && d < 0
        {
            return err("duration_ms", format!("{d} is negative"));
        }
        if let Some(c) = self.currency
            && !(c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return err(
                "currency",
                format!("{:?} is not an ISO 4217 code like \"USD\"", truncate(c)),
            );
        }
        if let Some(a) = self.attributes
            && !matches!(
                serde_json::from_str::<serde_json::Value>(a),
                Ok(serde_json::Value::Object(_))
            )
        {
            return err("attributes", "must be the text of a JSON object".into());
        }
        Ok(())
    }

    fn has(&self, field: &str) -> bool {
        match field {
            "conversation_id" => self.conversation_id.is_some(),
            "channel" => self.channel.is_some(),
            "actor_type" => self.actor_type.is_some(),
            "agent_id" => self.agent_id.is_some(),
            "status" => self.status.is_some(),
            "priority" => self.priority.is_some(),
            "csat_score" => self.csat_score.is_some(),
            "bot_id" => self.bot_id.is_some(),
            "workflow_id" => self.workflow_id.is_some(),
            "store" => self.store.is_some(),
            "order_id" => self.order_id.is_some(),
            _ => false,
        }
    }
}

/// `is_public` as stored: messages are public unless they say otherwise.
pub fn default_is_public(event_type: &str, is_public: Option<bool>) -> Option<bool> {
    match is_public {
        None if event_type == "message.created" => Some(true),
        other => other,
    }
}

impl Event {
    /// Checks the event against SPEC §2 ([`EventFields::check`]) and fills
    /// defaults (`is_public` = true for messages).
    pub fn validate(&mut self, index: usize) -> Result<(), EventError> {
        self.fields().check(index)?;
        self.is_public = default_is_public(&self.event_type, self.is_public);
        Ok(())
    }

    /// The fields validation looks at, borrowed.
    pub fn fields(&self) -> EventFields<'_> {
        EventFields {
            tenant_id: &self.tenant_id,
            event_id: &self.event_id,
            event_time: self.event_time,
            event_type: &self.event_type,
            channel: self.channel.as_deref(),
            conversation_id: self.conversation_id.as_deref(),
            actor_type: self.actor_type.as_deref(),
            agent_id: self.agent_id.as_deref(),
            status: self.status.as_deref(),
            priority: self.priority.as_deref(),
            csat_score: self.csat_score,
            bot_id: self.bot_id.as_deref(),
            confidence: self.confidence,
            workflow_id: self.workflow_id.as_deref(),
            store: self.store.as_deref(),
            order_id: self.order_id.as_deref(),
            order_total: self.order_total,
            currency: self.currency.as_deref(),
            duration_ms: self.duration_ms,
            attributes: self.attributes.as_deref(),
        }
    }
}

fn check_enum(field: &str, value: Option<&str>, allowed: &[&str]) -> Result<(), String> {
    match value {
        Some(v) if !allowed.contains(&v) => Err(format!(
            "{:?} is not a valid {field}; expected one of {}",
            truncate(v),
            allowed.join(", ")
        )),
        _ => Ok(()),
    }
}

/// Bounds what an error message echoes back of a bad value.
fn truncate(s: &str) -> &str {
    match s.char_indices().nth(80) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> Event {
        Event {
            tenant_id: "acme".into(),
            event_id: "e1".into(),
            event_time: 1_767_225_600_000_000, // 2026-01-01
            event_type: "message.created".into(),
            conversation_id: Some("c1".into()),
            actor_type: Some("customer".into()),
            ..Default::default()
        }
    }

    fn field_of(mut e: Event) -> String {
        e.validate(3).err().map(|e| e.field).unwrap_or_default()
    }

    #[test]
    fn valid_message_defaults_to_public() {
        let mut e = message();
        assert_eq!(e.validate(0), Ok(()));
        assert_eq!(e.is_public, Some(true));
    }

    #[test]
    fn each_rule_names_its_field() {
        let cases: Vec<(Event, &str)> = vec![
            (
                Event {
                    tenant_id: "Acme".into(),
                    ..message()
                },
                "tenant_id",
            ),
            (
                Event {
                    tenant_id: "-acme".into(),
                    ..message()
                },
                "tenant_id",
            ),
            (
                Event {
                    tenant_id: "a".repeat(65),
                    ..message()
                },
                "tenant_id",
            ),
            (
                Event {
                    event_id: String::new(),
                    ..message()
                },
                "event_id",
            ),
            (
                Event {
                    event_id: "x".repeat(129),
                    ..message()
                },
                "event_id",
            ),
            (
                Event {
                    event_time: 1_700_000_000_000,
                    ..message()
                },
                "event_time",
            ),
            (
                Event {
                    event_type: "message.sent".into(),
                    ..message()
                },
                "event_type",
            ),
            (
                Event {
                    event_type: "custom.".into(),
                    ..message()
                },
                "event_type",
            ),
            (
                Event {
                    conversation_id: None,
                    ..message()
                },
                "conversation_id",
            ),
            (
                Event {
                    actor_type: Some("robot".into()),
                    ..message()
                },
                "actor_type",
            ),
            (
                Event {
                    channel: Some("fax".into()),
                    ..message()
                },
                "channel",
            ),
            (
                Event {
                    priority: Some("p1".into()),
                    ..message()
                },
                "priority",
            ),
            (
                Event {
                    status: Some("online".into()),
                    ..message()
                },
                "status",
            ),
            (
                Event {
                    csat_score: Some(6),
                    ..message()
                },
                "csat_score",
            ),
            (
                Event {
                    confidence: Some(1.5),
                    ..message()
                },
                "confidence",
            ),
            (
                Event {
                    currency: Some("usd".into()),
                    ..message()
                },
                "currency",
            ),
            (
                Event {
                    attributes: Some("[1]".into()),
                    ..message()
                },
                "attributes",
            ),
            (
                Event {
                    duration_ms: Some(-1),
                    ..message()
                },
                "duration_ms",
            ),
        ];
        for (event, field) in cases {
            assert_eq!(field_of(event.clone()), field, "{event:?}");
        }
    }

    #[test]
    fn required_fields_per_type() {
        let e = Event {
            event_type: "agent.status_changed".into(),
            agent_id: Some("a1".into()),
            status: Some("online".into()),
            ..message()
        };
        assert_eq!(field_of(e.clone()), "");
        assert_eq!(
            field_of(Event {
                status: None,
                ..e.clone()
            }),
            "status"
        );
        // Agent statuses are not conversation statuses and vice versa.
        assert_eq!(
            field_of(Event {
                status: Some("open".into()),
                ..e
            }),
            "status"
        );
        let custom = Event {
            event_type: "custom.nps".into(),
            conversation_id: None,
            actor_type: None,
            ..message()
        };
        assert_eq!(field_of(custom), "");
    }

    #[test]
    fn error_names_event_and_field() {
        let mut e = Event {
            csat_score: Some(0),
            ..message()
        };
        let err = e
            .validate(7)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(
            err,
            "event 7 (event_id \"e1\"): csat_score: 0 is outside 1..5"
        );
    }
}
