//! API tokens (SPEC §8): bearer secrets with a role, optionally scoped to one
//! tenant. Only the SHA-256 of a token's secret is stored; the token itself
//! is shown once, when created.
//!
//! A token reads `cxdb_<id>_<secret>`: `id` (12 hex digits) finds the record
//! without hashing every stored token, `secret` (64 hex digits, 256 random
//! bits) is hashed and compared in constant time.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// What a token may do. Each role includes the ones before it, except that
/// `ingest` may only write and `read` may only query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Write events.
    Ingest,
    /// Run queries.
    Read,
    /// Run queries, create and drop views, export.
    Analyst,
    /// Everything: tokens, calendars, SLA policies, flush, compaction, retention.
    Admin,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Ingest, Role::Read, Role::Analyst, Role::Admin];

    /// "a read token", "an ingest token": for messages.
    pub fn a_token(self) -> String {
        match self {
            Role::Read => "a read token".into(),
            other => format!("an {other} token"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Ingest => "ingest",
            Role::Read => "read",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "unknown role {s:?}; expected one of ingest, read, analyst, admin"
                ))
            })
    }

    pub fn can_write(self) -> bool {
        matches!(self, Role::Ingest | Role::Admin)
    }

    pub fn can_query(self) -> bool {
        !matches!(self, Role::Ingest)
    }

    pub fn can_manage_views(self) -> bool {
        matches!(self, Role::Analyst | Role::Admin)
    }

    /// `COPY … TO 'file'` and `cxdb export` (audited exports).
    pub fn can_export(self) -> bool {
        matches!(self, Role::Analyst | Role::Admin)
    }

    pub fn is_admin(self) -> bool {
        self == Role::Admin
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored token: everything but its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// 12 hex digits, the public part of the token.
    pub id: String,
    /// A label for people ("grafana", "shopify-webhooks").
    pub name: String,
    pub role: Role,
    /// Only this tenant's rows and writes when set.
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// Hex SHA-256 of the secret part.
    pub secret_sha256: String,
    /// Epoch microseconds.
    pub created_at: i64,
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// A newly made token: the record to store and the token to hand out once.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub record: TokenRecord,
    pub token: String,
}

const PREFIX: &str = "cxdb_";

impl TokenRecord {
    /// Makes a token with 256 random bits of secret.
    pub fn generate(
        name: &str,
        role: Role,
        tenant_id: Option<String>,
        now: i64,
    ) -> Result<NewToken> {
        if name.trim().is_empty() || name.len() > 128 {
            return Err(Error::Invalid(
                "a token needs a name of 1 to 128 characters".into(),
            ));
        }
        if let Some(t) = &tenant_id
            && !crate::vocab::is_valid_tenant_id(t)
        {
            return Err(Error::Invalid(format!(
                "tenant_id {t:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"
            )));
        }
        let id_bytes: [u8; 6] = rand::random();
        let secret_bytes: [u8; 32] = rand::random();
        let id = hex(&id_bytes);
        let secret = hex(&secret_bytes);
        let record = TokenRecord {
            id: id.clone(),
            name: name.trim().to_string(),
            role,
            tenant_id,
            secret_sha256: sha256_hex(secret.as_bytes()),
            created_at: now,
            revoked_at: None,
        };
        Ok(NewToken {
            record,
            token: format!("{PREFIX}{id}_{secret}"),
        })
    }

    /// Whether `secret` is this token's secret (constant time in the secret).
    pub fn matches_secret(&self, secret: &str) -> bool {
        let want = self.secret_sha256.as_bytes();
        let got = sha256_hex(secret.as_bytes());
        let got = got.as_bytes();
        want.len() == got.len() && want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Splits `cxdb_<id>_<secret>` into id and secret.
pub fn parse_token(token: &str) -> Option<(&str, &str)> {
    let rest = token.strip_prefix(PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    (id.len() == 12 && !secret.is_empty()).then_some((id, secret))
}

/// Hex SHA-256, used for stored secrets and for a bootstrap admin token.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_token_parses_and_matches() {
        let new = TokenRecord::generate("grafana", Role::Read, Some("acme".into()), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        let (id, secret) = parse_token(&new.token).unwrap_or_else(|| panic!("unparseable"));
        assert_eq!(id, new.record.id);
        assert_eq!(secret.len(), 64);
        assert!(new.record.matches_secret(secret));
        assert!(!new.record.matches_secret("00"));
        assert!(!new.token.contains(&new.record.secret_sha256));
        let again =
            TokenRecord::generate("grafana", Role::Read, None, 1).unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(again.token, new.token);
    }

    #[test]
    fn bad_tokens_and_roles() {
        assert!(parse_token("Bearer x").is_none());
        assert!(parse_token("cxdb_short_x").is_none());
        assert!(Role::parse("root").is_err());
        assert_eq!(Role::parse("analyst").ok(), Some(Role::Analyst));
        assert!(TokenRecord::generate("", Role::Admin, None, 0).is_err());
        assert!(TokenRecord::generate("x", Role::Admin, Some("Bad Tenant".into()), 0).is_err());
    }
}
