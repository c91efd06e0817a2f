//! Timestamps: cxdb keeps every time as microseconds since the Unix epoch, UTC.

use chrono::{DateTime, NaiveDate};

/// Earliest `event_time` accepted: 1990-01-01T00:00:00Z. Anything earlier is
/// almost always epoch milliseconds or seconds sent where microseconds were
/// expected, so it is rejected rather than silently stored in 1970.
pub const MIN_EVENT_TIME_US: i64 = 631_152_000_000_000;
/// Latest `event_time` accepted: 2200-01-01T00:00:00Z (catches nanoseconds
/// sent as microseconds).
pub const MAX_EVENT_TIME_US: i64 = 7_258_118_400_000_000;

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Parses an RFC 3339 timestamp (`2026-03-01T12:00:00Z`, any offset, optional
/// fraction) into epoch microseconds.
pub fn parse_rfc3339_micros(s: &str) -> Option<i64> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// The UTC date of a timestamp, as days since 1970-01-01 (the partition key).
pub fn day_of(micros: i64) -> i32 {
    // Timestamps are validated to lie in [1990, 2200), so this fits in i32.
    micros.div_euclid(MICROS_PER_DAY) as i32
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01).
pub fn format_day(day: i32) -> String {
    let date = NaiveDate::from_num_days_from_ce_opt(day + 719_163).unwrap_or(NaiveDate::MIN);
    date.format("%Y-%m-%d").to_string()
}

/// Parses `YYYY-MM-DD` into days since 1970-01-01.
pub fn parse_day(s: &str) -> Option<i32> {
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    Some(
        date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?)
            .num_days() as i32,
    )
}

/// Now, in epoch microseconds.
pub fn now_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_round_trip() {
        let t = parse_rfc3339_micros("2026-03-08T23:59:59.999999-05:00").unwrap_or_default();
        // 23:59:59.999999 at UTC-5 is 04:59:59.999999 on the 9th in UTC.
        assert_eq!(format_day(day_of(t)), "2026-03-09");
        assert_eq!(parse_day("2026-03-09"), Some(day_of(t)));
        assert_eq!(format_day(0), "1970-01-01");
        assert_eq!(
            parse_rfc3339_micros("1990-01-01T00:00:00Z"),
            Some(MIN_EVENT_TIME_US)
        );
        assert_eq!(
            parse_rfc3339_micros("2200-01-01T00:00:00Z"),
            Some(MAX_EVENT_TIME_US)
        );
        assert_eq!(parse_rfc3339_micros("2026-13-01T00:00:00Z"), None);
    }
}
