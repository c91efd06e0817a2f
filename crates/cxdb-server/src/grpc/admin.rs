use std::sync::Arc;

use cxdb_proto::v1::admin_service_server::AdminService;
use cxdb_proto::v1::*;
use cxdb_query::Principal;
use cxdb_storage::catalog as cat;
use tonic::{Request, Response, Status};

use super::authorize;
use crate::AppState;
use crate::auth::Action;
use crate::error::Error;

#[derive(Debug)]
pub(crate) struct AdminSvc {
    pub(crate) state: Arc<AppState>,
}

fn invalid(e: cat::Error) -> Status {
    match e {
        cat::Error::Invalid(m) => Status::invalid_argument(m),
        cat::Error::InUse(m) => Status::failed_precondition(m),
        other => Error::Storage(other.into()).into(),
    }
}

/// Catalog commits fail either on validation (the caller's fault) or on I/O.
fn commit_error(e: cxdb_storage::Error) -> Status {
    match e {
        cxdb_storage::Error::Catalog(c) => invalid(c),
        other => Error::Storage(other).into(),
    }
}

fn calendar_from_proto(c: BusinessCalendar) -> Result<cat::BusinessCalendar, Status> {
    let weekly_hours = cat::WeeklyHours::parse_json(&c.weekly_hours_json).map_err(invalid)?;
    let holidays = c
        .holidays
        .iter()
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").map_err(|_| {
                Status::invalid_argument(format!("holidays: {d:?} is not a date like 2026-12-25"))
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(cat::BusinessCalendar {
        tenant_id: c.tenant_id,
        calendar_id: c.calendar_id,
        timezone: c.timezone,
        weekly_hours,
        holidays,
    })
}

fn calendar_to_proto(c: &cat::BusinessCalendar) -> BusinessCalendar {
    BusinessCalendar {
        tenant_id: c.tenant_id.clone(),
        calendar_id: c.calendar_id.clone(),
        timezone: c.timezone.clone(),
        weekly_hours_json: c.weekly_hours.to_json(),
        holidays: c
            .holidays
            .iter()
            .map(|d| d.format("%Y-%m-%d").to_string())
            .collect(),
    }
}

fn policy_from_proto(p: SlaPolicy) -> cat::SlaPolicy {
    cat::SlaPolicy {
        tenant_id: p.tenant_id,
        policy_id: p.policy_id,
        priority: p.priority,
        channel: p.channel,
        calendar_id: p.calendar_id,
        first_response_s: p.first_response_s,
        next_response_s: p.next_response_s,
        resolution_s: p.resolution_s,
    }
}

fn policy_to_proto(p: &cat::SlaPolicy) -> SlaPolicy {
    SlaPolicy {
        tenant_id: p.tenant_id.clone(),
        policy_id: p.policy_id.clone(),
        priority: p.priority.clone(),
        channel: p.channel.clone(),
        calendar_id: p.calendar_id.clone(),
        first_response_s: p.first_response_s,
        next_response_s: p.next_response_s,
        resolution_s: p.resolution_s,
    }
}

/// Admin requests need an admin token. A tenant-scoped admin may manage
/// only its tenant's calendars, SLA policies, retention and tokens; what
/// touches the whole server (`tenant = None`: flush, compaction, stats,
/// applying retention) needs an unscoped one.
fn in_scope(principal: &Principal, tenant: Option<&str>) -> Result<(), Status> {
    match (&principal.tenant, tenant) {
        (None, _) => Ok(()),
        (Some(own), Some(t)) if own == t => Ok(()),
        (Some(own), Some(t)) => Err(Status::permission_denied(format!(
            "this token is scoped to tenant {own:?} and cannot manage tenant {t:?}"
        ))),
        (Some(own), None) => Err(Status::permission_denied(format!(
            "this token is scoped to tenant {own:?}; server-wide operations need an unscoped \
             admin token"
        ))),
    }
}

/// The tenant a list request asks for, defaulting to the token's own.
fn list_tenant(principal: &Principal, asked: String) -> Result<String, Status> {
    match (&principal.tenant, asked.is_empty()) {
        (Some(own), true) => Ok(own.clone()),
        _ => {
            if !asked.is_empty() {
                in_scope(principal, Some(&asked))?;
            }
            Ok(asked)
        }
    }
}

fn token_to_proto(t: &cat::TokenRecord) -> TokenInfo {
    TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.to_string(),
        tenant_id: t.tenant_id.clone(),
        created_at_us: t.created_at,
        revoked_at_us: t.revoked_at,
    }
}

fn check_tenant(t: &str) -> Result<(), Status> {
    if cxdb_model::vocab::is_valid_tenant_id(t) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "tenant_id: {t:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"
        )))
    }
}

impl AdminSvc {
    fn admin<T>(&self, r: &Request<T>) -> Result<Principal, Status> {
        authorize(&self.state, r, Action::Admin)
    }
}

#[tonic::async_trait]
impl AdminService for AdminSvc {
    async fn flush(&self, r: Request<FlushRequest>) -> Result<Response<FlushResponse>, Status> {
        in_scope(&self.admin(&r)?, None)?;
        let out = self.state.storage.persist().await.map_err(Error::from)?;
        Ok(Response::new(FlushResponse {
            files: out.files as u64,
            rows: out.rows as u64,
        }))
    }

    async fn compact(
        &self,
        r: Request<CompactRequest>,
    ) -> Result<Response<CompactResponse>, Status> {
        in_scope(&self.admin(&r)?, None)?;
        let min = r.into_inner().min_files;
        let out = self
            .state
            .storage
            .compact((min > 0).then_some(min as usize))
            .await
            .map_err(Error::from)?;
        Ok(Response::new(CompactResponse {
            partitions: out.partitions as u64,
            files_in: out.files_in as u64,
            files_out: out.files_out as u64,
        }))
    }

    async fn set_retention(
        &self,
        r: Request<SetRetentionRequest>,
    ) -> Result<Response<SetRetentionResponse>, Status> {
        let principal = self.admin(&r)?;
        let r = r.into_inner();
        check_tenant(&r.tenant_id)?;
        in_scope(&principal, Some(&r.tenant_id))?;
        if r.days == Some(0) {
            return Err(Status::invalid_argument(
                "days: must be at least 1 (omit it to keep data forever)",
            ));
        }
        self.state
            .storage
            .set_retention(&r.tenant_id, r.days)
            .map_err(commit_error)?;
        Ok(Response::new(SetRetentionResponse {}))
    }

    async fn apply_retention(
        &self,
        r: Request<ApplyRetentionRequest>,
    ) -> Result<Response<ApplyRetentionResponse>, Status> {
        in_scope(&self.admin(&r)?, None)?;
        let out = self
            .state
            .storage
            .apply_retention(cxdb_model::time::now_micros())
            .await
            .map_err(Error::from)?;
        Ok(Response::new(ApplyRetentionResponse {
            partitions: out.partitions as u64,
            files: out.files as u64,
            rows: out.rows,
        }))
    }

    async fn stats(&self, r: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
        in_scope(&self.admin(&r)?, None)?;
        let s = self.state.storage.stats();
        Ok(Response::new(StatsResponse {
            accepted: s.accepted,
            duplicate: s.duplicates,
            rejected: s.rejected,
            buffer_rows: s.buffer_rows as u64,
            buffer_bytes: s.buffer_bytes as u64,
            files: s.files as u64,
            persisted_rows: s.persisted_rows,
            persisted_bytes: s.persisted_bytes,
            wal_segments: s.wal_segments as u64,
            wal_syncs: s.wal_syncs,
            dedup_hot_ids: s.dedup_hot_ids as u64,
            dedup_bloom_bytes: s.dedup_bloom_bytes as u64,
        }))
    }

    async fn upsert_calendar(
        &self,
        r: Request<BusinessCalendar>,
    ) -> Result<Response<UpsertCalendarResponse>, Status> {
        let principal = self.admin(&r)?;
        let c = calendar_from_proto(r.into_inner())?;
        check_tenant(&c.tenant_id)?;
        in_scope(&principal, Some(&c.tenant_id))?;
        self.state
            .storage
            .commit_catalog(|m| m.upsert_calendar(c))
            .map_err(commit_error)?;
        Ok(Response::new(UpsertCalendarResponse {}))
    }

    async fn delete_calendar(
        &self,
        r: Request<DeleteCalendarRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let principal = self.admin(&r)?;
        let r = r.into_inner();
        in_scope(&principal, Some(&r.tenant_id))?;
        let deleted = self
            .state
            .storage
            .commit_catalog(|m| m.delete_calendar(&r.tenant_id, &r.calendar_id))
            .map_err(commit_error)?;
        Ok(Response::new(DeleteResponse { deleted }))
    }

    async fn list_calendars(
        &self,
        r: Request<ListRequest>,
    ) -> Result<Response<ListCalendarsResponse>, Status> {
        let principal = self.admin(&r)?;
        let tenant = list_tenant(&principal, r.into_inner().tenant_id)?;
        let m = self.state.storage.manifest();
        let calendars = m
            .calendars
            .iter()
            .filter(|c| tenant.is_empty() || c.tenant_id == tenant)
            .map(calendar_to_proto)
            .collect();
        Ok(Response::new(ListCalendarsResponse { calendars }))
    }

    async fn upsert_sla_policy(
        &self,
        r: Request<SlaPolicy>,
    ) -> Result<Response<UpsertSlaPolicyResponse>, Status> {
        let principal = self.admin(&r)?;
        let p = policy_from_proto(r.into_inner());
        check_tenant(&p.tenant_id)?;
        in_scope(&principal, Some(&p.tenant_id))?;
        self.state
            .storage
            .commit_catalog(|m| m.upsert_sla_policy(p))
            .map_err(commit_error)?;
        Ok(Response::new(UpsertSlaPolicyResponse {}))
    }

    async fn delete_sla_policy(
        &self,
        r: Request<DeleteSlaPolicyRequest>,
    ) -> Result<Response<DeleteResponse>, Status> {
        let principal = self.admin(&r)?;
        let r = r.into_inner();
        in_scope(&principal, Some(&r.tenant_id))?;
        let deleted = self
            .state
            .storage
            .commit_catalog(|m| Ok(m.delete_sla_policy(&r.tenant_id, &r.policy_id)))
            .map_err(commit_error)?;
        Ok(Response::new(DeleteResponse { deleted }))
    }

    async fn list_sla_policies(
        &self,
        r: Request<ListRequest>,
    ) -> Result<Response<ListSlaPoliciesResponse>, Status> {
        let principal = self.admin(&r)?;
        let tenant = list_tenant(&principal, r.into_inner().tenant_id)?;
        let m = self.state.storage.manifest();
        let policies = m
            .sla_policies
            .iter()
            .filter(|p| tenant.is_empty() || p.tenant_id == tenant)
            .map(policy_to_proto)
            .collect();
        Ok(Response::new(ListSlaPoliciesResponse { policies }))
    }

    async fn create_token(
        &self,
        r: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        let principal = self.admin(&r)?;
        let r = r.into_inner();
        let role = cat::Role::parse(&r.role).map_err(invalid)?;
        // A scoped admin hands out only tokens of its own tenant.
        let tenant = r.tenant_id.or_else(|| principal.tenant.clone());
        match &tenant {
            Some(t) => in_scope(&principal, Some(t))?,
            None => in_scope(&principal, None)?,
        }
        let new = cat::TokenRecord::generate(&r.name, role, tenant, cxdb_model::time::now_micros())
            .map_err(invalid)?;
        let info = token_to_proto(&new.record);
        let record = new.record;
        self.state
            .storage
            .commit_catalog(move |m| {
                m.tokens.push(record);
                Ok(())
            })
            .map_err(commit_error)?;
        tracing::info!(id = %info.id, name = %info.name, role = %info.role, tenant = ?info.tenant_id, "token created");
        Ok(Response::new(CreateTokenResponse {
            token: new.token,
            info: Some(info),
        }))
    }

    async fn list_tokens(
        &self,
        r: Request<ListRequest>,
    ) -> Result<Response<ListTokensResponse>, Status> {
        let principal = self.admin(&r)?;
        let tenant = list_tenant(&principal, r.into_inner().tenant_id)?;
        let m = self.state.storage.manifest();
        let tokens = m
            .tokens
            .iter()
            .filter(|t| tenant.is_empty() || t.tenant_id.as_deref() == Some(tenant.as_str()))
            .map(token_to_proto)
            .collect();
        Ok(Response::new(ListTokensResponse { tokens }))
    }

    async fn revoke_token(
        &self,
        r: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        let principal = self.admin(&r)?;
        let id = r.into_inner().id;
        let manifest = self.state.storage.manifest();
        let Some(record) = manifest.token(&id) else {
            return Err(Status::not_found(format!("no token with id {id:?}")));
        };
        match &record.tenant_id {
            Some(t) => in_scope(&principal, Some(t))?,
            None => in_scope(&principal, None)?,
        }
        if record.revoked_at.is_some() {
            return Ok(Response::new(RevokeTokenResponse { revoked: false }));
        }
        let now = cxdb_model::time::now_micros();
        self.state
            .storage
            .commit_catalog(|m| Ok(m.revoke_token(&id, now)))
            .map_err(commit_error)?;
        tracing::info!(%id, "token revoked");
        Ok(Response::new(RevokeTokenResponse { revoked: true }))
    }
}
