//! Automation workflow runs: `automation.triggered` followed by
//! `automation.completed` (with `duration_ms`) or `automation.failed` (with
//! the error in `attributes`).

use cxdb_model::Event;
use rand::Rng;
use rand::rngs::StdRng;

use crate::phrases::AUTOMATION_ERRORS;
use crate::random::pick;

/// One run of `workflow` triggered at `at`. `template` carries the tenant
/// and whatever links the run (conversation, order, channel); `ids` are the
/// two event ids.
pub(crate) fn run(
    rng: &mut StdRng,
    template: &Event,
    workflow: &str,
    at: i64,
    duration_ms: std::ops::Range<i64>,
    fail_p: f64,
    ids: [String; 2],
) -> [Event; 2] {
    let [trigger_id, end_id] = ids;
    let duration = rng.random_range(duration_ms);
    let failed = rng.random_bool(fail_p);
    let base = Event {
        event_type: "automation.triggered".into(),
        actor_type: Some("system".into()),
        workflow_id: Some(workflow.into()),
        event_time: at,
        event_id: trigger_id,
        ..template.clone()
    };
    let end = Event {
        event_type: if failed {
            "automation.failed"
        } else {
            "automation.completed"
        }
        .into(),
        event_id: end_id,
        event_time: at + duration * 1_000,
        duration_ms: Some(duration),
        attributes: failed
            .then(|| serde_json::json!({ "error": pick(rng, AUTOMATION_ERRORS) }).to_string()),
        ..base.clone()
    };
    [base, end]
}
