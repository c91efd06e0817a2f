//! SLA policies (SPEC §2 `sla_policies`): response and resolution targets per tenant,
//! optionally narrowed to a priority and/or channel and measured on a business calendar.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::vocab::{CHANNELS, PRIORITIES, check_id, check_one_of, check_tenant_id};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlaPolicy {
    pub tenant_id: String,
    pub policy_id: String,
    /// `None` = any priority; else one of low/normal/high/urgent.
    #[serde(default)]
    pub priority: Option<String>,
    /// `None` = any channel; else a SPEC §2 channel.
    #[serde(default)]
    pub channel: Option<String>,
    /// `None` = calendar time (24x7).
    #[serde(default)]
    pub calendar_id: Option<String>,
    #[serde(default)]
    pub first_response_s: Option<i64>,
    #[serde(default)]
    pub next_response_s: Option<i64>,
    #[serde(default)]
    pub resolution_s: Option<i64>,
}

impl SlaPolicy {
    /// Checks everything that does not need the rest of the manifest; whether
    /// `calendar_id` exists is checked by [`Manifest::upsert_sla_policy`](crate::Manifest::upsert_sla_policy).
    pub fn validate(&self) -> Result<()> {
        check_id("sla policy id", &self.policy_id).map_err(Error::Invalid)?;
        self.check().map_err(|m| self.invalid(m))
    }

    pub(crate) fn invalid(&self, m: String) -> Error {
        Error::Invalid(format!("sla policy \"{}\": {m}", self.policy_id))
    }

    fn check(&self) -> Result<(), String> {
        check_tenant_id(&self.tenant_id)?;
        if let Some(p) = &self.priority {
            check_one_of("priority", p, PRIORITIES)?;
        }
        if let Some(c) = &self.channel {
            check_one_of("channel", c, CHANNELS)?;
        }
        if let Some(c) = &self.calendar_id {
            check_id("calendar id", c)?;
        }
        let targets = [
            ("first_response_s", self.first_response_s),
            ("next_response_s", self.next_response_s),
            ("resolution_s", self.resolution_s),
        ];
        for (field, value) in targets {
            if let Some(v) = value.filter(|v| *v <= 0) {
                return Err(format!("{field} must be > 0 seconds, got {v}"));
            }
        }
        Ok(())
    }
}
