//! Synthetic customer-support traffic for `cxdb serve --demo`, `cxdb demo`
//! and the benchmarks: a seeded, deterministic simulation of tenants with
//! seasonal conversation arrivals, bots, agents on shifts, automations and
//! commerce orders, producing [`cxdb_model::Event`]s that pass
//! [`Event::validate`](cxdb_model::Event::validate).
//!
//! Callers only ask for time windows ([`DemoGenerator::advance_to`]); the
//! simulation runs in fixed one-minute steps, each with its own RNG, so the
//! events are the same whatever the window boundaries.

mod agents;
mod automation;
mod commerce;
mod conversation;
mod customers;
mod error;
mod generator;
mod phrases;
mod random;
mod seasonality;

pub use error::{Error, Result};
pub use generator::DemoGenerator;

/// What to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Seeds every random choice; the same seed and start give the same events.
    pub seed: u64,
    /// Tenant ids (`[a-z0-9][a-z0-9_-]{0,63}`), each simulated independently.
    pub tenants: Vec<String>,
    /// Average new conversations per hour per tenant at the weekly mean (default 120).
    pub conversations_per_hour: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            seed: 42,
            tenants: vec!["acme".into(), "globex".into(), "initech".into()],
            conversations_per_hour: 120.0,
        }
    }
}

impl DemoConfig {
    /// Checks what the simulation cannot repair: tenant ids that every event
    /// would fail validation on, and a rate that is not a finite number ≥ 0.
    pub fn validate(&self) -> Result<()> {
        for tenant in &self.tenants {
            if !cxdb_model::vocab::is_valid_tenant_id(tenant) {
                return Err(Error::InvalidTenant(tenant.clone()));
            }
        }
        let rate = self.conversations_per_hour;
        if !(rate.is_finite() && rate >= 0.0) {
            return Err(Error::InvalidRate(rate));
        }
        Ok(())
    }
}
