use serde_json::{Map, Value};

use crate::error::EventError;
use crate::event::Event;
use crate::time::parse_rfc3339_micros;

/// Parses one NDJSON line into an [`Event`] (not yet validated). `index` is
/// the line's position, carried into errors.
pub fn event_from_json_line(index: usize, line: &str) -> Result<Event, EventError> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(map)) => event_from_json(index, &map),
        Ok(other) => Err(EventError::new(
            index,
            None,
            "line",
            format!("expected a JSON object, got {}", kind(&other)),
        )),
        Err(e) => Err(EventError::new(
            index,
            None,
            "line",
            format!("invalid JSON: {e}"),
        )),
    }
}

/// Converts a JSON object with the SPEC §2 column names into an [`Event`].
/// Timestamps are RFC 3339 strings or integer epoch microseconds;
/// `attributes` may be an object or the text of one; `ingested_at` is
/// ignored (the server sets it). Unknown keys are rejected so that a typo
/// does not silently drop data: put extra data in `attributes`.
pub fn event_from_json(index: usize, map: &Map<String, Value>) -> Result<Event, EventError> {
    let event_id = map.get("event_id").and_then(Value::as_str);
    let err = |field: &str, msg: String| EventError::new(index, event_id, field, msg);
    let mut e = Event::default();
    for (key, value) in map {
        if value.is_null() {
            continue;
        }
        let k = key.as_str();
        let string = || -> Result<String, EventError> {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| err(k, format!("expected a string, got {}", kind(value))))
        };
        let opt = || string().map(Some);
        match k {
            "tenant_id" => e.tenant_id = string()?,
            "event_id" => e.event_id = string()?,
            "event_type" => e.event_type = string()?,
            "event_time" => e.event_time = timestamp(value).map_err(|m| err(k, m))?,
            "ingested_at" => {}
            "channel" => e.channel = opt()?,
            "conversation_id" => e.conversation_id = opt()?,
            "ticket_id" => e.ticket_id = opt()?,
            "customer_id" => e.customer_id = opt()?,
            "customer_email" => e.customer_email = opt()?,
            "customer_phone" => e.customer_phone = opt()?,
            "actor_type" => e.actor_type = opt()?,
            "agent_id" => e.agent_id = opt()?,
            "team_id" => e.team_id = opt()?,
            "status" => e.status = opt()?,
            "priority" => e.priority = opt()?,
            "message_id" => e.message_id = opt()?,
            "body" => e.body = opt()?,
            "bot_id" => e.bot_id = opt()?,
            "intent" => e.intent = opt()?,
            "workflow_id" => e.workflow_id = opt()?,
            "store" => e.store = opt()?,
            "order_id" => e.order_id = opt()?,
            "currency" => e.currency = opt()?,
            "is_public" => {
                e.is_public = Some(value.as_bool().ok_or_else(|| {
                    err(k, format!("expected true or false, got {}", kind(value)))
                })?)
            }
            "csat_score" => {
                let n = integer(value).map_err(|m| err(k, m))?;
                e.csat_score =
                    Some(i32::try_from(n).map_err(|_| err(k, format!("{n} is outside 1..5")))?);
            }
            "duration_ms" => e.duration_ms = Some(integer(value).map_err(|m| err(k, m))?),
            "confidence" => e.confidence = Some(number(value).map_err(|m| err(k, m))?),
            "order_total" => e.order_total = Some(number(value).map_err(|m| err(k, m))?),
            "tags" => {
                let items = value.as_array().ok_or_else(|| {
                    err(
                        k,
                        format!("expected an array of strings, got {}", kind(value)),
                    )
                })?;
                let tags = items
                    .iter()
                    .map(|t| t.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| err(k, "expected an array of strings".into()))?;
                e.tags = Some(tags);
            }
            "attributes" => {
                e.attributes = Some(match value {
                    Value::Object(_) => value.to_string(),
                    Value::String(s) => s.clone(),
                    other => {
                        return Err(err(
                            k,
                            format!("expected a JSON object, got {}", kind(other)),
                        ));
                    }
                })
            }
            _ => {
                return Err(err(
                    k,
                    "unknown field; events have the columns of SPEC §2, put anything else in \"attributes\"".into(),
                ));
            }
        }
    }
    Ok(e)
}

fn timestamp(v: &Value) -> Result<i64, String> {
    match v {
        Value::String(s) => parse_rfc3339_micros(s)
            .ok_or_else(|| format!("{s:?} is not an RFC 3339 timestamp like 2026-03-01T12:00:00Z")),
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| format!("{n} is not an integer number of microseconds since the epoch")),
        other => Err(format!(
            "expected an RFC 3339 string or epoch microseconds, got {}",
            kind(other)
        )),
    }
}

fn integer(v: &Value) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("expected an integer, got {}", kind(v)))
}

fn number(v: &Value) -> Result<f64, String> {
    v.as_f64()
        .ok_or_else(|| format!("expected a number, got {}", kind(v)))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_line() {
        let line = r#"{"tenant_id":"acme","event_id":"m1","event_time":"2026-01-01T00:00:01.5Z",
            "event_type":"message.created","conversation_id":"c1","actor_type":"agent",
            "is_public":false,"tags":["refund","vip"],"attributes":{"x":1},"csat_score":null,
            "ingested_at":"1999-01-01T00:00:00Z"}"#;
        let e = event_from_json_line(0, line).unwrap_or_default();
        assert_eq!(e.event_time, 1_767_225_601_500_000);
        assert_eq!(e.is_public, Some(false));
        assert_eq!(e.tags, Some(vec!["refund".to_string(), "vip".to_string()]));
        assert_eq!(e.attributes.as_deref(), Some(r#"{"x":1}"#));
        assert_eq!(e.csat_score, None);
        assert_eq!(e.ingested_at, 0);
    }

    #[test]
    fn epoch_micros_accepted() {
        let e = event_from_json_line(0, r#"{"event_time":1767225600000000}"#).unwrap_or_default();
        assert_eq!(e.event_time, 1_767_225_600_000_000);
    }

    #[test]
    fn bad_lines_name_the_field() {
        let cases = [
            ("[1]", "line"),
            ("{", "line"),
            (r#"{"event_id":"e","event_time":"yesterday"}"#, "event_time"),
            (r#"{"event_time":1.5}"#, "event_time"),
            (r#"{"channel":5}"#, "channel"),
            (r#"{"csat_score":"5"}"#, "csat_score"),
            (r#"{"csat_score":99999999999}"#, "csat_score"),
            (r#"{"tags":"a,b"}"#, "tags"),
            (r#"{"tags":[1]}"#, "tags"),
            (r#"{"is_public":"yes"}"#, "is_public"),
            (r#"{"attributes":[1]}"#, "attributes"),
            (r#"{"chanel":"chat"}"#, "chanel"),
        ];
        for (line, field) in cases {
            let got = event_from_json_line(2, line).err().map(|e| e.field);
            assert_eq!(got.as_deref(), Some(field), "{line}");
        }
        let e = event_from_json_line(2, r#"{"event_id":"x9","channel":5}"#).err();
        assert_eq!(e.and_then(|e| e.event_id).as_deref(), Some("x9"));
    }
}
