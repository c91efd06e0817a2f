//! Authentication and authorization (SPEC §8): who sends a request, as a
//! [`Principal`], and what its role lets it do.
//!
//! Every protocol extracts the presented token (gRPC/Flight `authorization:
//! Bearer …` metadata, HTTP `Authorization` header, pgwire password, Flight
//! SQL Basic credentials) and authenticates it on **every** request — an
//! open pgwire connection re-checks its token before each statement — so a
//! revoked token stops working at once.
//!
//! - `--auth none`: every request acts as an unscoped admin.
//! - `--auth token`: a token `cxdb_<id>_<secret>` is looked up in the
//!   catalog by its public id and the SHA-256 of its secret compared in
//!   constant time; the bootstrap `--admin-token` (kept only as its hash) is
//!   an unscoped admin.
//!
//! Tenant scope is not enforced here: the principal's tenant goes to the
//! query layer (every table is scoped when the session is built) and to the
//! storage engine (each event of another tenant is rejected).

use cxdb_query::Principal;
use cxdb_storage::catalog::{Manifest, Role, parse_token, sha256_hex};

use base64::Engine as _;
use tonic::Status;
use tonic::metadata::MetadataMap;

use crate::error::{Error, Result};

/// How requests are authenticated (`--auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// Every request is an unscoped admin: local development only.
    #[default]
    None,
    /// Every request needs a valid token.
    Token,
}

impl AuthMode {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "token" => Some(Self::Token),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Token => "token",
        }
    }
}

/// The authentication settings of a server.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    pub mode: AuthMode,
    /// `--admin-token`: an unscoped admin token that is not in the catalog,
    /// to create the first tokens with.
    pub admin_token: Option<String>,
}

#[derive(Debug)]
pub(crate) struct Auth {
    mode: AuthMode,
    /// SHA-256 (hex) of `--admin-token`.
    admin_sha256: Option<String>,
}

const MISSING: &str = "missing token: send `authorization: Bearer <token>` (HTTP and gRPC), \
                       the token as the password (PostgreSQL), or Basic auth with the token as \
                       the password (Flight SQL)";

impl Auth {
    pub(crate) fn new(config: &AuthConfig) -> Self {
        Self {
            mode: config.mode,
            admin_sha256: config
                .admin_token
                .as_deref()
                .map(|t| sha256_hex(t.as_bytes())),
        }
    }

    pub(crate) fn mode(&self) -> AuthMode {
        self.mode
    }

    /// The principal of a request presenting `token` (without `Bearer `),
    /// checked against the catalog `manifest`.
    pub(crate) fn authenticate(
        &self,
        manifest: &Manifest,
        token: Option<&str>,
    ) -> Result<Principal> {
        if self.mode == AuthMode::None {
            return Ok(Principal::anonymous());
        }
        let token = token
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthenticated(MISSING.into()))?;
        if let Some(admin) = &self.admin_sha256
            && constant_time_eq(admin.as_bytes(), sha256_hex(token.as_bytes()).as_bytes())
        {
            return Ok(Principal::unscoped());
        }
        let invalid = || {
            Error::Unauthenticated(
                "invalid token: not a token this server issued (tokens look like \
                 cxdb_<id>_<secret>)"
                    .into(),
            )
        };
        let (id, secret) = parse_token(token).ok_or_else(invalid)?;
        let record = manifest
            .token(id)
            .filter(|r| r.matches_secret(secret))
            .ok_or_else(invalid)?;
        if record.revoked_at.is_some() {
            return Err(Error::Unauthenticated(format!(
                "token {} ({:?}) was revoked",
                record.id, record.name
            )));
        }
        Ok(Principal::new(
            record.role,
            record.tenant_id.clone(),
            Some(record.id.clone()),
        ))
    }

    /// Re-checks a principal authenticated earlier on a long-lived
    /// connection: its token may have been revoked since.
    pub(crate) fn recheck(&self, manifest: &Manifest, principal: &Principal) -> Result<()> {
        let Some(id) = &principal.token else {
            return Ok(());
        };
        match manifest.token(id) {
            Some(record) if record.revoked_at.is_none() => Ok(()),
            Some(record) => Err(Error::Unauthenticated(format!(
                "token {} ({:?}) was revoked",
                record.id, record.name
            ))),
            None => Err(Error::Unauthenticated(format!(
                "token {id} no longer exists"
            ))),
        }
    }
}

/// The token of an `authorization` value `Bearer <token>` (any case).
pub(crate) fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The token a call presents: `authorization: Bearer <token>`, or the
/// password of `authorization: Basic` (Tableau and other JDBC users can only
/// fill in a user name and a password; the token goes in the password).
pub(crate) fn metadata_token(metadata: &MetadataMap) -> Result<Option<String>, Status> {
    let Some(value) = metadata.get("authorization") else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| Status::unauthenticated("the authorization header is not ASCII text"))?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Some(rest.to_string()));
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let text = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                Status::unauthenticated("Basic credentials are not base64 of user:password")
            })?;
        let (user, password) = text.split_once(':').unwrap_or((text.as_str(), ""));
        let token = if password.is_empty() { user } else { password };
        return Ok((!token.is_empty()).then(|| token.to_string()));
    }
    Err(Status::unauthenticated(format!(
        "unsupported authorization scheme {scheme:?}: send `Bearer <token>`, or Basic auth \
         with the token as the password"
    )))
}

/// What a request needs its principal's role to allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Write,
    Query,
    Admin,
}

impl Action {
    fn allowed(self, role: Role) -> bool {
        match self {
            Self::Write => role.can_write(),
            Self::Query => role.can_query(),
            Self::Admin => role.is_admin(),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::Write => "write events (needs an ingest or admin token)",
            Self::Query => "run queries (needs a read, analyst or admin token)",
            Self::Admin => "use admin operations (needs an admin token)",
        }
    }
}

/// Fails with PERMISSION_DENIED unless `principal`'s role allows `action`.
pub(crate) fn require(principal: &Principal, action: Action) -> Result<()> {
    if action.allowed(principal.role) {
        Ok(())
    } else {
        Err(Error::PermissionDenied(format!(
            "{} cannot {}",
            principal.role.a_token(),
            action.describe()
        )))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use cxdb_storage::catalog::TokenRecord;

    use super::*;

    #[test]
    fn bearer_values() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn tokens_roles_and_revocation() {
        let auth = Auth::new(&AuthConfig {
            mode: AuthMode::Token,
            admin_token: Some("bootstrap".into()),
        });
        let mut manifest = Manifest::default();
        let new = TokenRecord::generate("bi", Role::Read, Some("acme".into()), 1)
            .unwrap_or_else(|e| panic!("{e}"));
        manifest.tokens.push(new.record.clone());

        let p = auth
            .authenticate(&manifest, Some(&new.token))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p.role, Role::Read);
        assert_eq!(p.tenant.as_deref(), Some("acme"));
        assert_eq!(p.token.as_deref(), Some(new.record.id.as_str()));
        assert!(require(&p, Action::Query).is_ok());
        let denied = require(&p, Action::Write).map_err(|e| e.to_string());
        assert_eq!(
            denied,
            Err("a read token cannot write events (needs an ingest or admin token)".into())
        );

        let admin = auth
            .authenticate(&manifest, Some("bootstrap"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(admin, Principal::unscoped());
        assert_eq!(admin.who(), "admin");

        // A wrong secret for a real id, garbage and nothing are all refused.
        let wrong = format!("cxdb_{}_{}", new.record.id, "0".repeat(64));
        for token in [Some(wrong.as_str()), Some("garbage"), None, Some("  ")] {
            let err = auth.authenticate(&manifest, token).err();
            assert!(
                matches!(err, Some(Error::Unauthenticated(_))),
                "{token:?}: {err:?}"
            );
        }

        assert!(auth.recheck(&manifest, &p).is_ok());
        assert!(manifest.revoke_token(&new.record.id, 2));
        let msg = auth.recheck(&manifest, &p).map_err(|e| e.to_string());
        assert_eq!(
            msg,
            Err(format!("token {} (\"bi\") was revoked", new.record.id))
        );
        assert!(auth.authenticate(&manifest, Some(&new.token)).is_err());
    }

    #[test]
    fn auth_none_is_an_unscoped_admin() {
        let auth = Auth::new(&AuthConfig::default());
        let p = auth
            .authenticate(&Manifest::default(), Some("anything"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(p, Principal::anonymous());
        assert_eq!(p.who(), "anonymous");
        assert!(require(&p, Action::Admin).is_ok());
    }
}
