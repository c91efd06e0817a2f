//! The catalog as the support functions see it: the calendars and SLA
//! policies of a manifest taken when the session was created, narrowed to the
//! session's tenant scope.

use std::collections::HashMap;
use std::sync::Arc;

use cxdb_storage::catalog::{Manifest, SlaPolicy};

use super::business_clock::BusinessClock;

/// A calendar compiled for arithmetic, or why it cannot be used (no opening
/// hours); the error surfaces only when a query uses the calendar.
pub type CompiledCalendar = Arc<Result<BusinessClock, String>>;

/// Calendars compiled for arithmetic and SLA policies ordered for matching,
/// for one session. A scoped session's snapshot holds only its tenant's.
#[derive(Debug, Default)]
pub struct CatalogSnapshot {
    scope: Option<String>,
    /// tenant -> calendar id -> the compiled calendar, or why it cannot be used.
    calendars: HashMap<String, HashMap<String, CompiledCalendar>>,
    /// calendar id -> tenants having a calendar with that id, sorted.
    tenants_by_calendar: HashMap<String, Vec<String>>,
    /// tenant -> policies, most specific first (see [`Self::sla_policy_for`]).
    policies: HashMap<String, Vec<SlaPolicy>>,
}

impl CatalogSnapshot {
    pub fn new(manifest: &Manifest, scope: Option<&str>) -> Self {
        let visible = |tenant: &str| scope.is_none_or(|s| s == tenant);
        let mut snapshot = Self {
            scope: scope.map(str::to_string),
            ..Self::default()
        };
        for c in manifest.calendars.iter().filter(|c| visible(&c.tenant_id)) {
            snapshot
                .calendars
                .entry(c.tenant_id.clone())
                .or_default()
                .insert(c.calendar_id.clone(), Arc::new(BusinessClock::new(c)));
            snapshot
                .tenants_by_calendar
                .entry(c.calendar_id.clone())
                .or_default()
                .push(c.tenant_id.clone());
        }
        for tenants in snapshot.tenants_by_calendar.values_mut() {
            tenants.sort_unstable();
            tenants.dedup();
        }
        for p in manifest
            .sla_policies
            .iter()
            .filter(|p| visible(&p.tenant_id))
        {
            snapshot
                .policies
                .entry(p.tenant_id.clone())
                .or_default()
                .push(p.clone());
        }
        for list in snapshot.policies.values_mut() {
            list.sort_by(|a, b| {
                specificity(b)
                    .cmp(&specificity(a))
                    .then_with(|| a.policy_id.cmp(&b.policy_id))
            });
        }
        snapshot
    }

    /// The calendar `calendar_id` of `tenant`; with no tenant, the session's
    /// scope, else the only tenant having that calendar id.
    pub fn calendar(
        &self,
        calendar_id: &str,
        tenant: Option<&str>,
    ) -> Result<CompiledCalendar, String> {
        let tenant = match tenant.or(self.scope.as_deref()) {
            Some(t) => t,
            None => match self.tenants_by_calendar.get(calendar_id).map(Vec::as_slice) {
                Some([only]) => only.as_str(),
                Some(many @ [_, _, ..]) => {
                    return Err(format!(
                        "calendar \"{calendar_id}\" exists in several tenants ({}): pass the \
                         tenant_id as the 4th argument",
                        many.join(", ")
                    ));
                }
                _ => {
                    return Err(format!(
                        "unknown calendar \"{calendar_id}\" (no tenant has a calendar with this id)"
                    ));
                }
            },
        };
        self.calendars
            .get(tenant)
            .and_then(|m| m.get(calendar_id))
            .cloned()
            .ok_or_else(|| format!("unknown calendar \"{calendar_id}\" for tenant \"{tenant}\""))
    }

    /// The most specific policy of `tenant` matching `priority` and `channel`:
    /// a policy's null priority/channel matches anything (including a null
    /// argument), a set one only an equal argument. Priority and channel both
    /// set beats priority only, which beats channel only, which beats neither;
    /// equal specificity goes to the smallest `policy_id` (byte order).
    pub fn sla_policy_for(
        &self,
        tenant: &str,
        priority: Option<&str>,
        channel: Option<&str>,
    ) -> Option<&SlaPolicy> {
        let matches = |want: &Option<String>, got: Option<&str>| {
            want.as_deref().is_none_or(|w| Some(w) == got)
        };
        self.policies
            .get(tenant)?
            .iter()
            .find(|p| matches(&p.priority, priority) && matches(&p.channel, channel))
    }
}

/// Higher is more specific: 3 = priority and channel, 2 = priority, 1 =
/// channel, 0 = neither.
fn specificity(p: &SlaPolicy) -> u8 {
    2 * u8::from(p.priority.is_some()) + u8::from(p.channel.is_some())
}
