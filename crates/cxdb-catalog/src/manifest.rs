//! The manifest: one immutable version of everything the catalog records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::BusinessCalendar;
use crate::error::{Error, Result};
use crate::sla::SlaPolicy;
use crate::token::TokenRecord;
use crate::view::ViewRecord;

/// One Parquet file of the `events` lake, holding one tenant/day partition's rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Object-store path, e.g. `events/tenant_id=acme/date=2026-01-01/0192….parquet`.
    pub path: String,
    pub tenant_id: String,
    /// UTC date as days since 1970-01-01.
    pub day: i32,
    pub rows: u64,
    pub size_bytes: u64,
    /// `event_time` minimum, epoch microseconds.
    pub min_time: i64,
    /// `event_time` maximum, epoch microseconds.
    pub max_time: i64,
    /// Epoch microseconds.
    pub created_at: i64,
}

/// A file that left the catalog (compaction, retention) and is deleted from the object
/// store later, once no reader can still be using it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingDelete {
    pub path: String,
    /// Epoch microseconds when it left the catalog.
    pub since: i64,
}

/// Fields other than `version` default when missing so later versions of cxdb can add
/// fields and still read older manifests.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u64,
    /// WAL sequence number up to which (inclusive) every record is in `files`.
    #[serde(default)]
    pub wal_persisted_through: u64,
    #[serde(default)]
    pub files: Vec<FileMeta>,
    #[serde(default)]
    pub pending_deletes: Vec<PendingDelete>,
    #[serde(default)]
    pub calendars: Vec<BusinessCalendar>,
    #[serde(default)]
    pub sla_policies: Vec<SlaPolicy>,
    /// Tenant -> days of data kept.
    #[serde(default)]
    pub retention_days: BTreeMap<String, u32>,
    /// API tokens (hashed secrets), revoked ones included.
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
    /// Custom views (SQL `CREATE VIEW`, `--views-dir`).
    #[serde(default)]
    pub views: Vec<ViewRecord>,
}

impl Manifest {
    /// The custom view `name` of `tenant` (`None`: the global one).
    pub fn view(&self, tenant: Option<&str>, name: &str) -> Option<&ViewRecord> {
        self.views
            .iter()
            .find(|v| v.name == name && v.tenant_id.as_deref() == tenant)
    }

    /// Adds or replaces (same tenant and name) a custom view; the caller has
    /// checked the name and planned the definition.
    pub fn upsert_view(&mut self, view: ViewRecord) {
        match self
            .views
            .iter_mut()
            .find(|v| v.name == view.name && v.tenant_id == view.tenant_id)
        {
            Some(slot) => *slot = view,
            None => self.views.push(view),
        }
    }

    /// Removes a custom view; false when there was none.
    pub fn drop_view(&mut self, tenant: Option<&str>, name: &str) -> bool {
        let before = self.views.len();
        self.views
            .retain(|v| !(v.name == name && v.tenant_id.as_deref() == tenant));
        self.views.len() != before
    }

    pub fn token(&self, id: &str) -> Option<&TokenRecord> {
        self.tokens.iter().find(|t| t.id == id)
    }

    /// Marks a token revoked; false when there is no such token.
    pub fn revoke_token(&mut self, id: &str, now: i64) -> bool {
        match self.tokens.iter_mut().find(|t| t.id == id) {
            Some(t) => {
                t.revoked_at.get_or_insert(now);
                true
            }
            None => false,
        }
    }

    pub fn files_of(&self, tenant: &str) -> impl Iterator<Item = &FileMeta> {
        self.files.iter().filter(move |f| f.tenant_id == tenant)
    }

    pub fn calendar(&self, tenant: &str, id: &str) -> Option<&BusinessCalendar> {
        self.calendars
            .iter()
            .find(|c| c.tenant_id == tenant && c.calendar_id == id)
    }

    /// Validates `c` and adds it, replacing the calendar with the same tenant and id.
    pub fn upsert_calendar(&mut self, c: BusinessCalendar) -> Result<()> {
        c.validate()?;
        let same =
            |x: &BusinessCalendar| x.tenant_id == c.tenant_id && x.calendar_id == c.calendar_id;
        match self.calendars.iter_mut().find(|x| same(x)) {
            Some(slot) => *slot = c,
            None => self.calendars.push(c),
        }
        Ok(())
    }

    /// Removes a calendar; `Ok(false)` if there was none. Refused while an SLA policy of
    /// the tenant measures on it.
    pub fn delete_calendar(&mut self, tenant: &str, id: &str) -> Result<bool> {
        if let Some(p) = self
            .sla_policies
            .iter()
            .find(|p| p.tenant_id == tenant && p.calendar_id.as_deref() == Some(id))
        {
            return Err(Error::InUse(format!(
                "calendar \"{id}\" of tenant \"{tenant}\" is used by sla policy \"{}\" \
                 (delete or change the policy first)",
                p.policy_id
            )));
        }
        let before = self.calendars.len();
        self.calendars
            .retain(|c| !(c.tenant_id == tenant && c.calendar_id == id));
        Ok(self.calendars.len() != before)
    }

    /// Validates `p` (including that its calendar exists for the tenant) and adds it,
    /// replacing the policy with the same tenant and id.
    pub fn upsert_sla_policy(&mut self, p: SlaPolicy) -> Result<()> {
        p.validate()?;
        if let Some(cal) = &p.calendar_id
            && self.calendar(&p.tenant_id, cal).is_none()
        {
            return Err(p.invalid(format!(
                "calendar \"{cal}\" does not exist for tenant \"{}\"",
                p.tenant_id
            )));
        }
        let same = |x: &SlaPolicy| x.tenant_id == p.tenant_id && x.policy_id == p.policy_id;
        match self.sla_policies.iter_mut().find(|x| same(x)) {
            Some(slot) => *slot = p,
            None => self.sla_policies.push(p),
        }
        Ok(())
    }

    /// Removes a policy; false if there was none.
    pub fn delete_sla_policy(&mut self, tenant: &str, id: &str) -> bool {
        let before = self.sla_policies.len();
        self.sla_policies
            .retain(|p| !(p.tenant_id == tenant && p.policy_id == id));
        self.sla_policies.len() != before
    }
}
