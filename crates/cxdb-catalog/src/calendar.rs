//! Business calendars (SPEC §2 `business_calendars`): a time zone, weekly opening
//! hours and holidays, used to measure SLA time in business hours.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::vocab::{check_id, check_tenant_id};

pub const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 1440;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessCalendar {
    pub tenant_id: String,
    pub calendar_id: String,
    /// IANA name, e.g. `Europe/Berlin`.
    pub timezone: String,
    pub weekly_hours: WeeklyHours,
    #[serde(default, with = "iso_dates")]
    pub holidays: Vec<NaiveDate>,
}

impl BusinessCalendar {
    pub fn validate(&self) -> Result<()> {
        let ctx = |m: String| Error::Invalid(format!("calendar \"{}\": {m}", self.calendar_id));
        check_id("calendar id", &self.calendar_id).map_err(Error::Invalid)?;
        check_tenant_id(&self.tenant_id).map_err(ctx)?;
        self.tz().map_err(|e| ctx(e.to_string()))?;
        self.weekly_hours
            .validate()
            .map_err(|e| ctx(e.to_string()))?;
        if self.weekly_hours.is_empty() {
            // An SLA clock on such a calendar would never run, so every target would
            // be met forever: almost certainly a mistake.
            return Err(ctx("weekly_hours has no opening hours on any day".into()));
        }
        Ok(())
    }

    pub fn tz(&self) -> Result<chrono_tz::Tz> {
        self.timezone
            .parse()
            .map_err(|_| Error::Invalid(format!("unknown time zone \"{}\"", self.timezone)))
    }
}

/// Opening intervals per weekday. JSON form: `{"mon": [["09:00","17:00"]], "tue": [...], ...}`
/// (missing day = closed). An interval whose end <= start crosses midnight into the next
/// day (`"22:00"-"06:00"`; equal start and end is a full 24 hours); `"24:00"` is allowed
/// as an end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WeeklyHours {
    /// Index 0 = Monday.
    pub days: [Vec<OpenInterval>; 7],
}

/// Minutes since local midnight; `end_min` may be 1440 (`"24:00"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInterval {
    pub start_min: u16,
    pub end_min: u16,
}

impl OpenInterval {
    /// True when the interval ends on the next day.
    pub fn crosses_midnight(&self) -> bool {
        self.end_min <= self.start_min
    }
}

impl WeeklyHours {
    pub fn parse_json(s: &str) -> Result<Self> {
        let value: Value = serde_json::from_str(s)
            .map_err(|e| Error::Invalid(format!("weekly_hours: invalid JSON: {e}")))?;
        Self::from_value(&value)
    }

    /// Days in weekday order, closed days left out.
    pub fn to_json(&self) -> String {
        // Serializing strings into a String cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// True when it is closed every day.
    pub fn is_empty(&self) -> bool {
        self.days.iter().all(Vec::is_empty)
    }

    fn validate(&self) -> Result<()> {
        for (day, intervals) in DAY_NAMES.iter().zip(&self.days) {
            for (i, iv) in intervals.iter().enumerate() {
                if iv.start_min >= MINUTES_PER_DAY || iv.end_min > MINUTES_PER_DAY {
                    return Err(Error::Invalid(format!(
                        "weekly_hours.{day}[{i}]: start {} / end {} minutes out of range \
                         (start < 1440, end <= 1440)",
                        iv.start_min, iv.end_min
                    )));
                }
            }
        }
        Ok(())
    }

    fn from_value(value: &Value) -> Result<Self> {
        let invalid = |m: String| Error::Invalid(format!("weekly_hours{m}"));
        let Value::Object(map) = value else {
            return Err(invalid(
                r#": expected a JSON object like {"mon": [["09:00","17:00"]]}"#.into(),
            ));
        };
        let mut hours = WeeklyHours::default();
        for (key, intervals) in map {
            let Some(d) = DAY_NAMES.iter().position(|n| n == key) else {
                return Err(invalid(format!(
                    ": unknown day \"{key}\" (expected one of {})",
                    DAY_NAMES.join(", ")
                )));
            };
            let list = match intervals {
                Value::Array(list) => list.as_slice(),
                Value::Null => &[],
                _ => return Err(invalid(format!(".{key}: expected a list of intervals"))),
            };
            for (i, iv) in list.iter().enumerate() {
                let at = format!(".{key}[{i}]");
                let pair = match iv.as_array().map(Vec::as_slice) {
                    Some([Value::String(s), Value::String(e)]) => (s, e),
                    _ => return Err(invalid(format!("{at}: expected [\"HH:MM\", \"HH:MM\"]"))),
                };
                let start_min = parse_hhmm(pair.0).map_err(|m| invalid(format!("{at}: {m}")))?;
                if start_min == MINUTES_PER_DAY {
                    return Err(invalid(format!(
                        "{at}: \"24:00\" is only allowed as an end"
                    )));
                }
                let end_min = parse_hhmm(pair.1).map_err(|m| invalid(format!("{at}: {m}")))?;
                hours.days[d].push(OpenInterval { start_min, end_min });
            }
        }
        Ok(hours)
    }
}

/// `"HH:MM"`, 00:00-23:59, or `"24:00"`.
fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("\"{s}\" is not HH:MM");
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' {
        return Err(bad());
    }
    let digits = |x: &[u8]| -> Option<u16> {
        x.iter().try_fold(0u16, |acc, c| {
            c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
        })
    };
    let (Some(h), Some(m)) = (digits(&b[..2]), digits(&b[3..])) else {
        return Err(bad());
    };
    match (h, m) {
        (0..=23, 0..=59) | (24, 0) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

fn format_hhmm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

impl Serialize for WeeklyHours {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // By hand rather than through `serde_json::Map`, which would sort the days
        // alphabetically.
        s.collect_map(
            DAY_NAMES
                .iter()
                .zip(&self.days)
                .filter(|(_, ivs)| !ivs.is_empty())
                .map(|(day, ivs)| {
                    let list: Vec<[String; 2]> = ivs
                        .iter()
                        .map(|iv| [format_hhmm(iv.start_min), format_hhmm(iv.end_min)])
                        .collect();
                    (day, list)
                }),
        )
    }
}

impl<'de> Deserialize<'de> for WeeklyHours {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = Value::deserialize(d)?;
        Self::from_value(&value).map_err(serde::de::Error::custom)
    }
}

/// Holidays as `"YYYY-MM-DD"` strings.
mod iso_dates {
    use chrono::NaiveDate;
    use serde::{Deserialize, Deserializer, Serializer};

    const FORMAT: &str = "%Y-%m-%d";

    pub(super) fn serialize<S: Serializer>(dates: &[NaiveDate], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(dates.iter().map(|d| d.format(FORMAT).to_string()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<NaiveDate>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| {
                NaiveDate::parse_from_str(s, FORMAT).map_err(|_| {
                    serde::de::Error::custom(format!("holidays: \"{s}\" is not YYYY-MM-DD"))
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hhmm_edges() {
        assert_eq!(parse_hhmm("00:00"), Ok(0));
        assert_eq!(parse_hhmm("23:59"), Ok(1439));
        assert_eq!(parse_hhmm("24:00"), Ok(1440));
        for bad in ["24:01", "9:00", "09:60", "0900", "+9:00", "09:0a", "０9:00"] {
            assert_eq!(parse_hhmm(bad), Err(format!("\"{bad}\" is not HH:MM")));
        }
    }
}
