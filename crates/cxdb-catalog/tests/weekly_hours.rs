//! `WeeklyHours` JSON: parse/print round trips and error messages.

use cxdb_catalog::{OpenInterval, WeeklyHours};
use proptest::prelude::*;

use crate::{TestResult, err_msg};

#[test]
fn round_trip_with_midnight_crossing_and_24_00() -> TestResult {
    let text = r#"{"mon":[["09:00","17:00"]],"fri":[["22:00","06:00"]],"sat":[["00:00","24:00"]]}"#;
    let h = WeeklyHours::parse_json(text)?;
    let iv = |start_min, end_min| OpenInterval { start_min, end_min };
    assert_eq!(h.days[0], vec![iv(540, 1020)]);
    assert_eq!(h.days[4], vec![iv(1320, 360)]);
    assert!(h.days[4].iter().all(OpenInterval::crosses_midnight));
    assert_eq!(h.days[5], vec![iv(0, 1440)]);
    assert!(!h.days[5][0].crosses_midnight());
    assert!([1, 2, 3, 6].iter().all(|&d| h.days[d].is_empty()));
    assert!(!h.is_empty());
    // Printed in weekday order, which is also the input order here.
    assert_eq!(h.to_json(), text);
    assert_eq!(WeeklyHours::parse_json(&h.to_json())?, h);
    Ok(())
}

#[test]
fn closed_days_and_empty() -> TestResult {
    let h = WeeklyHours::parse_json(r#"{"sun": [], "sat": null}"#)?;
    assert!(h.is_empty());
    assert_eq!(h.to_json(), "{}");
    assert!(WeeklyHours::parse_json("{}")?.is_empty());
    Ok(())
}

#[test]
fn errors_name_the_day_index_and_value() {
    let cases = [
        (
            r#"{"mon":[["9am","17:00"]]}"#,
            r#"weekly_hours.mon[0]: "9am" is not HH:MM"#,
        ),
        (
            r#"{"tue":[["09:00","17:00"],["18:00","24:30"]]}"#,
            r#"weekly_hours.tue[1]: "24:30" is not HH:MM"#,
        ),
        (
            r#"{"wed":[["24:00","06:00"]]}"#,
            r#"weekly_hours.wed[0]: "24:00" is only allowed as an end"#,
        ),
        (
            r#"{"thu":[["09:00"]]}"#,
            r#"weekly_hours.thu[0]: expected ["HH:MM", "HH:MM"]"#,
        ),
        (
            r#"{"fri":"09:00-17:00"}"#,
            "weekly_hours.fri: expected a list of intervals",
        ),
        (
            r#"{"monday":[]}"#,
            r#"weekly_hours: unknown day "monday" (expected one of mon, tue, wed, thu, fri, sat, sun)"#,
        ),
        (
            r#"[["09:00","17:00"]]"#,
            r#"weekly_hours: expected a JSON object like {"mon": [["09:00","17:00"]]}"#,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(
            err_msg(WeeklyHours::parse_json(input)),
            expected,
            "input {input}"
        );
    }
    assert!(err_msg(WeeklyHours::parse_json("{")).starts_with("weekly_hours: invalid JSON"));
}

fn interval() -> impl Strategy<Value = OpenInterval> {
    (0u16..1440, 0u16..=1440).prop_map(|(start_min, end_min)| OpenInterval { start_min, end_min })
}

proptest! {
    #[test]
    fn any_valid_hours_round_trip(days in proptest::array::uniform7(proptest::collection::vec(interval(), 0..3))) {
        let h = WeeklyHours { days };
        prop_assert_eq!(WeeklyHours::parse_json(&h.to_json()).ok(), Some(h));
    }
}
