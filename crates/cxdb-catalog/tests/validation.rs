//! Calendar and SLA policy validation: each bad value is rejected with a message naming it.

use cxdb_catalog::{BusinessCalendar, Manifest, OpenInterval, SlaPolicy, WeeklyHours};

use crate::{TestResult, calendar, err_msg, policy};

fn bad_calendar(edit: impl FnOnce(&mut BusinessCalendar)) -> String {
    let mut c = match calendar("acme", "cal1") {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    };
    edit(&mut c);
    let mut m = Manifest::default();
    let msg = err_msg(m.upsert_calendar(c));
    assert!(m.calendars.is_empty());
    msg
}

#[test]
fn bad_calendars_are_named() {
    assert_eq!(
        bad_calendar(|c| c.timezone = "Mars/Base".into()),
        r#"calendar "cal1": unknown time zone "Mars/Base""#
    );
    assert_eq!(
        bad_calendar(|c| c.tenant_id = "Acme".into()),
        r#"calendar "cal1": tenant id "Acme" does not match [a-z0-9][a-z0-9_-]{0,63}"#
    );
    assert_eq!(
        bad_calendar(|c| c.calendar_id.clear()),
        "calendar id must not be empty"
    );
    assert_eq!(
        bad_calendar(|c| c.weekly_hours = WeeklyHours::default()),
        r#"calendar "cal1": weekly_hours has no opening hours on any day"#
    );
    assert_eq!(
        bad_calendar(|c| c.weekly_hours.days[2] = vec![OpenInterval {
            start_min: 1440,
            end_min: 60
        }]),
        r#"calendar "cal1": weekly_hours.wed[0]: start 1440 / end 60 minutes out of range (start < 1440, end <= 1440)"#
    );
}

#[test]
fn tz_resolves_iana_names() -> TestResult {
    let c = calendar("acme", "cal1")?;
    assert_eq!(c.tz()?, chrono_tz::Europe::Berlin);
    Ok(())
}

fn manifest_with_calendar() -> Result<Manifest, cxdb_catalog::Error> {
    let mut m = Manifest::default();
    m.upsert_calendar(calendar("acme", "cal1")?)?;
    Ok(m)
}

/// A change that makes a valid policy invalid.
type Edit = fn(&mut SlaPolicy);

#[test]
fn bad_policies_are_named() -> TestResult {
    let mut m = manifest_with_calendar()?;
    let cases: [(Edit, &str); 8] = [
        (
            (|p| p.priority = Some("p1".into())),
            r#"sla policy "p1": priority "p1" is not one of low, normal, high, urgent"#,
        ),
        (
            (|p| p.channel = Some("fax".into())),
            r#"sla policy "p1": channel "fax" is not one of chat, email, whatsapp, messenger, instagram, sms, voice, web_form, api, slack"#,
        ),
        (
            (|p| p.calendar_id = Some("cal9".into())),
            r#"sla policy "p1": calendar "cal9" does not exist for tenant "acme""#,
        ),
        (
            (|p| p.first_response_s = Some(0)),
            r#"sla policy "p1": first_response_s must be > 0 seconds, got 0"#,
        ),
        (
            (|p| p.next_response_s = Some(-5)),
            r#"sla policy "p1": next_response_s must be > 0 seconds, got -5"#,
        ),
        (
            (|p| p.tenant_id = "-acme".into()),
            r#"sla policy "p1": tenant id "-acme" does not match [a-z0-9][a-z0-9_-]{0,63}"#,
        ),
        ((|p| p.policy_id.clear()), "sla policy id must not be empty"),
        (
            // The calendar exists, but for another tenant.
            (|p| p.tenant_id = "globex".into()),
            r#"sla policy "p1": calendar "cal1" does not exist for tenant "globex""#,
        ),
    ];
    for (edit, expected) in cases {
        let mut p = policy("acme", "p1", Some("cal1"));
        edit(&mut p);
        assert_eq!(err_msg(m.upsert_sla_policy(p)), expected);
    }
    assert!(m.sla_policies.is_empty());
    Ok(())
}

#[test]
fn upserts_replace_and_deletes_respect_references() -> TestResult {
    let mut m = manifest_with_calendar()?;
    m.upsert_sla_policy(policy("acme", "p1", Some("cal1")))?;
    let mut changed = policy("acme", "p1", None);
    changed.priority = None;
    changed.channel = None;
    m.upsert_sla_policy(changed.clone())?;
    m.upsert_sla_policy(policy("acme", "p2", Some("cal1")))?;
    assert_eq!(m.sla_policies.len(), 2);
    assert_eq!(m.sla_policies.first(), Some(&changed));

    let mut cal = calendar("acme", "cal1")?;
    cal.timezone = "America/New_York".into();
    m.upsert_calendar(cal)?;
    assert_eq!(m.calendars.len(), 1);
    assert_eq!(
        m.calendar("acme", "cal1").map(|c| c.timezone.as_str()),
        Some("America/New_York")
    );

    assert_eq!(
        err_msg(m.delete_calendar("acme", "cal1")),
        r#"calendar "cal1" of tenant "acme" is used by sla policy "p2" (delete or change the policy first)"#
    );
    assert!(m.calendar("acme", "cal1").is_some());
    assert!(m.delete_sla_policy("acme", "p2"));
    assert!(!m.delete_sla_policy("acme", "p2"));
    assert!(m.delete_calendar("acme", "cal1")?);
    assert!(!m.delete_calendar("acme", "cal1")?);
    Ok(())
}
