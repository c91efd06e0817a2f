//! Business-hours arithmetic on one [`BusinessCalendar`]: the math behind
//! `business_seconds` and `business_add`.
//!
//! Definitions (they make the two functions exact inverses and additive):
//!
//! * Opening hours are wall-clock intervals in the calendar's IANA zone. An
//!   interval whose end is at or before its start runs past midnight into the
//!   next day (`22:00`–`02:00`); equal start and end is 24 hours.
//! * A holiday closes its whole local date, 00:00 to 24:00, including the
//!   part of a previous day's interval that runs past midnight into it.
//! * A wall-clock time stands for the first instant at which the local clock
//!   shows it or a later time: during a DST gap (02:30 on a spring-forward
//!   night) that is the transition instant, during a DST fold (01:30 on a
//!   fall-back night) the earlier of the two. Business time is then real
//!   elapsed time between those instants, so a 01:00–04:00 opening lasts 2 h
//!   on a spring-forward night and 4 h on a fall-back night.
//! * Everything is computed in integer microseconds, so
//!   `seconds(a, add(a, s)) == s` and `seconds(a, c) == seconds(a, b) +
//!   seconds(b, c)` hold exactly.

use chrono::{DateTime, Datelike, Days, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;
use cxdb_storage::catalog::BusinessCalendar;

const MINUTES_PER_DAY: u16 = 1440;
const MICROS_PER_SECOND: i64 = 1_000_000;

/// The longest stretch of calendar the functions walk: 400 years (one
/// Gregorian cycle). The cost is linear in days; beyond this a query is
/// almost certainly a mistake (a zero timestamp, a seconds/ms mix-up).
pub const MAX_SPAN_DAYS: u64 = 146_097;

/// A business calendar compiled for arithmetic.
#[derive(Debug, Clone)]
pub struct BusinessClock {
    tz: Tz,
    /// Per weekday (0 = Monday): sorted, disjoint, non-adjacent opening
    /// segments in local minutes, `0 <= start < end <= 1440`, after splitting
    /// intervals that cross midnight.
    days: [Vec<(u16, u16)>; 7],
    /// Sorted.
    holidays: Vec<NaiveDate>,
}

impl BusinessClock {
    /// Fails on an unknown time zone or a calendar without any opening hours.
    pub fn new(calendar: &BusinessCalendar) -> Result<Self, String> {
        let name = &calendar.calendar_id;
        let tenant = &calendar.tenant_id;
        let tz: Tz = calendar.timezone.parse().map_err(|_| {
            format!(
                "calendar \"{name}\" of tenant \"{tenant}\" has an unknown time zone \"{}\"",
                calendar.timezone
            )
        })?;
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        for (weekday, intervals) in calendar.weekly_hours.days.iter().enumerate() {
            for iv in intervals {
                let (start, end) = (iv.start_min.min(MINUTES_PER_DAY), iv.end_min);
                if end > start {
                    days[weekday].push((start, end.min(MINUTES_PER_DAY)));
                } else {
                    // Crosses midnight: the rest of this day, then the start of the next.
                    if start < MINUTES_PER_DAY {
                        days[weekday].push((start, MINUTES_PER_DAY));
                    }
                    if end > 0 {
                        days[(weekday + 1) % 7].push((0, end));
                    }
                }
            }
        }
        for segments in &mut days {
            segments.sort_unstable();
            let mut merged: Vec<(u16, u16)> = Vec::with_capacity(segments.len());
            for &(s, e) in segments.iter() {
                match merged.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => merged.push((s, e)),
                }
            }
            *segments = merged;
        }
        if days.iter().all(Vec::is_empty) {
            return Err(format!(
                "calendar \"{name}\" of tenant \"{tenant}\" has no opening hours"
            ));
        }
        let mut holidays = calendar.holidays.clone();
        holidays.sort_unstable();
        holidays.dedup();
        Ok(Self { tz, days, holidays })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Business microseconds in `[a, b)`; antisymmetric: `micros(a, b) ==
    /// -micros(b, a)`, so an end before the start gives a negative duration,
    /// like `end - start` does for plain timestamps.
    pub fn micros(&self, a: i64, b: i64) -> Result<i64, String> {
        if a == b {
            return Ok(0);
        }
        if b < a {
            return self.micros(b, a).map(|m| -m);
        }
        let first = self.local_date(a)?.pred_opt().ok_or_else(out_of_range)?;
        let last = self.local_date(b)?.succ_opt().ok_or_else(out_of_range)?;
        let span = (last - first).num_days().unsigned_abs();
        if span > MAX_SPAN_DAYS {
            return Err(format!(
                "the interval spans {span} days, more than the limit of {MAX_SPAN_DAYS} (400 years)"
            ));
        }
        let mut total = 0i64;
        let mut date = first;
        while date <= last {
            self.for_each_segment(date, |s, e| {
                let (lo, hi) = (s.max(a), e.min(b));
                if hi > lo {
                    total += hi - lo;
                }
            })?;
            date = date.succ_opt().ok_or_else(out_of_range)?;
        }
        Ok(total)
    }

    /// Business seconds in `[a, b)` (see [`Self::micros`]).
    pub fn seconds(&self, a: i64, b: i64) -> Result<f64, String> {
        self.micros(a, b).map(micros_to_seconds)
    }

    /// The instant at which `micros` business microseconds have elapsed since
    /// `start`: the earliest `t >= start` with `micros(start, t) == micros`.
    /// Negative `micros` go back in time: the latest `t <= start` with
    /// `micros(t, start) == -micros`. Zero gives `start` itself, open or not.
    pub fn add_micros(&self, start: i64, micros: i64) -> Result<i64, String> {
        if micros == 0 {
            return Ok(start);
        }
        let origin = self.local_date(start)?;
        let mut remaining = micros.unsigned_abs();
        let forward = micros > 0;
        let mut date = if forward {
            origin.pred_opt()
        } else {
            origin.succ_opt()
        }
        .ok_or_else(out_of_range)?;
        let mut segments = Vec::with_capacity(4);
        loop {
            segments.clear();
            self.for_each_segment(date, |s, e| {
                segments.push((s, e));
            })?;
            for k in 0..segments.len() {
                let (s, e) = segments[if forward { k } else { segments.len() - 1 - k }];
                let (lo, hi) = if forward {
                    (s.max(start), e)
                } else {
                    (s, e.min(start))
                };
                if hi <= lo {
                    continue;
                }
                let avail = (hi - lo).unsigned_abs();
                if remaining <= avail {
                    // remaining <= avail, so it fits in i64.
                    let r = remaining as i64;
                    return Ok(if forward { lo + r } else { hi - r });
                }
                remaining -= avail;
            }
            if (date - origin).num_days().unsigned_abs() > MAX_SPAN_DAYS {
                return Err(format!(
                    "{} business seconds reach beyond {MAX_SPAN_DAYS} days (400 years) of the calendar",
                    micros_to_seconds(micros)
                ));
            }
            date = if forward {
                date.succ_opt()
            } else {
                date.pred_opt()
            }
            .ok_or_else(out_of_range)?;
        }
    }

    /// [`Self::add_micros`] with seconds, rounded to the microsecond.
    pub fn add_seconds(&self, start: i64, seconds: f64) -> Result<i64, String> {
        let micros = (seconds * MICROS_PER_SECOND as f64).round();
        if !micros.is_finite() || micros.abs() >= i64::MAX as f64 {
            return Err(format!("{seconds} seconds is out of range"));
        }
        self.add_micros(start, micros as i64)
    }

    fn for_each_segment(&self, date: NaiveDate, mut f: impl FnMut(i64, i64)) -> Result<(), String> {
        if self.holidays.binary_search(&date).is_ok() {
            return Ok(());
        }
        let weekday = date.weekday().num_days_from_monday() as usize;
        for &(s, e) in &self.days[weekday] {
            let s = self.wall_to_utc(date, s)?;
            let e = self.wall_to_utc(date, e)?;
            if e > s {
                f(s, e);
            }
        }
        Ok(())
    }

    fn local_date(&self, micros: i64) -> Result<NaiveDate, String> {
        let utc = DateTime::from_timestamp_micros(micros).ok_or_else(out_of_range)?;
        Ok(utc.with_timezone(&self.tz).date_naive())
    }

    /// The first instant (UTC microseconds) at which the local clock shows
    /// `date` + `minute` or later.
    fn wall_to_utc(&self, date: NaiveDate, minute: u16) -> Result<i64, String> {
        let (date, minute) = if minute >= MINUTES_PER_DAY {
            (
                date.checked_add_days(Days::new(1))
                    .ok_or_else(out_of_range)?,
                0,
            )
        } else {
            (date, minute)
        };
        let local = date
            .and_hms_opt(u32::from(minute / 60), u32::from(minute % 60), 0)
            .ok_or_else(out_of_range)?;
        match self.tz.from_local_datetime(&local) {
            chrono::LocalResult::Single(t) => Ok(t.timestamp_micros()),
            chrono::LocalResult::Ambiguous(earlier, later) => {
                Ok(earlier.timestamp_micros().min(later.timestamp_micros()))
            }
            chrono::LocalResult::None => self.gap_end(local),
        }
    }

    /// `local` falls in a DST gap: the transition instant, found by bisection
    /// between the offsets a day before and a day after (the clock runs
    /// forward inside that window, so "shows `local` or later" is monotone).
    fn gap_end(&self, local: NaiveDateTime) -> Result<i64, String> {
        let naive_secs = local.and_utc().timestamp();
        let offset_at = |utc_secs: i64| -> Result<i64, String> {
            let t = DateTime::from_timestamp(utc_secs, 0).ok_or_else(out_of_range)?;
            Ok(i64::from(
                self.tz
                    .offset_from_utc_datetime(&t.naive_utc())
                    .fix()
                    .local_minus_utc(),
            ))
        };
        let before = offset_at(naive_secs - 86_400)?;
        let after = offset_at(naive_secs + 86_400)?;
        // Candidates u with u + offset(u) >= local lie in [local - after, local - before].
        let (mut lo, mut hi) = (naive_secs - after, naive_secs - before);
        if lo >= hi {
            return Ok(hi * MICROS_PER_SECOND);
        }
        // Invariant: local(hi) >= local, local(lo) < local.
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if mid + offset_at(mid)? >= naive_secs {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi * MICROS_PER_SECOND)
    }
}

fn micros_to_seconds(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_SECOND as f64
}

fn out_of_range() -> String {
    "timestamp out of the supported range".to_string()
}
