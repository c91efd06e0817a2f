//! Integration tests of `cxdb-catalog` against real files in a temporary directory.

mod durability;
mod validation;
mod weekly_hours;

use cxdb_catalog::{BusinessCalendar, FileMeta, SlaPolicy, WeeklyHours};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn file(tenant: &str, n: u64) -> FileMeta {
    FileMeta {
        path: format!("events/tenant_id={tenant}/date=2026-01-01/{n:04}.parquet"),
        tenant_id: tenant.into(),
        day: 20454,
        rows: 100 + n,
        size_bytes: 4096 * n,
        min_time: 1_767_225_600_000_000,
        max_time: 1_767_225_600_000_000 + n as i64,
        created_at: 1_767_300_000_000_000,
    }
}

fn calendar(tenant: &str, id: &str) -> Result<BusinessCalendar, cxdb_catalog::Error> {
    Ok(BusinessCalendar {
        tenant_id: tenant.into(),
        calendar_id: id.into(),
        timezone: "Europe/Berlin".into(),
        weekly_hours: WeeklyHours::parse_json(
            r#"{"mon":[["09:00","17:00"]],"fri":[["09:00","12:00"],["22:00","06:00"]]}"#,
        )?,
        holidays: vec![chrono::NaiveDate::from_ymd_opt(2026, 12, 25).unwrap_or_default()],
    })
}

fn policy(tenant: &str, id: &str, calendar: Option<&str>) -> SlaPolicy {
    SlaPolicy {
        tenant_id: tenant.into(),
        policy_id: id.into(),
        priority: Some("urgent".into()),
        channel: Some("email".into()),
        calendar_id: calendar.map(Into::into),
        first_response_s: Some(3600),
        next_response_s: None,
        resolution_s: Some(86_400),
    }
}

/// The `Err` message of `r`, or a panic naming what was unexpectedly accepted.
fn err_msg<T: std::fmt::Debug>(r: Result<T, cxdb_catalog::Error>) -> String {
    match r {
        Ok(v) => panic!("expected an error, got Ok({v:?})"),
        Err(e) => e.to_string(),
    }
}
