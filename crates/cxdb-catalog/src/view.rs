//! Custom views (`CREATE VIEW` by analyst and admin tokens, `--views-dir`
//! files): their SQL, kept in the manifest so they are back after a restart.
//!
//! A view made by a tenant-scoped token belongs to that tenant: only that
//! tenant's sessions see it (and another tenant may use the same name). A
//! view made unscoped (admin, `--auth none`, `--views-dir`) is global: every
//! session sees it. Either way a view is planned in the session of whoever
//! queries it, so a scoped session reads only its tenant's rows through any
//! view.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One custom view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRecord {
    /// Lower-case SQL identifier: `[a-z_][a-z0-9_]{0,62}`.
    pub name: String,
    /// The whole `CREATE VIEW name AS …` statement, replayed to plan it.
    pub definition: String,
    /// `None`: global; `Some(t)`: only tenant `t` sees it.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The file of a `--views-dir` view; `None` for views made over SQL.
    #[serde(default)]
    pub file: Option<String>,
    /// Who made it: a token id, `admin` (bootstrap or `--auth none`) or
    /// `views-dir`.
    #[serde(default)]
    pub created_by: String,
    /// Epoch microseconds of the last CREATE (OR REPLACE).
    pub updated_at: i64,
}

/// Whether `name` may name a view.
pub fn check_view_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && (b[0].is_ascii_lowercase() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "view name {name:?} must match [a-z_][a-z0-9_]{{0,62}}"
        )))
    }
}

/// Whether a session of `scope` sees `view`.
pub fn view_visible(view: &ViewRecord, scope: Option<&str>) -> bool {
    match (&view.tenant_id, scope) {
        (None, _) => true,
        (Some(owner), Some(scope)) => owner == scope,
        (Some(_), None) => false,
    }
}
