use std::sync::Arc;

use cxdb_proto::v1::admin_service_server::AdminService;
use cxdb_proto::v1::*;
use cxdb_storage::catalog as cat;
use tonic::{Request, Response, Status};

use crate::AppState;
use crate::error::Error;

#[derive(Debug)]
pub(crate) struct AdminSvc {
    pub(crate) state: Arc<AppState>,
}

fn invalid(e: cat::Error) -> Status {
    match e {
        cat::Error::Invalid(m) => Status::invalid_argument(m),
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

fn check_tenant(t: &str) -> Result<(), Status> {
    if cxdb_model::vocab::is_valid_tenant_id(t) {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "tenant_id: {t:?} does not match [a-z0-9][a-z0-9_-]{{0,63}}"
        )))
    }
}

#[tonic::async_trait]
impl AdminService for AdminSvc {
    async fn flush(&self, _: Request<FlushRequest>) -> Result<Response<FlushResponse>, Status> {
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
        let r = r.into_inner();
        check_tenant(&r.tenant_id)?;
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
        _: Request<ApplyRetentionRequest>,
    ) -> Result<Response<ApplyRetentionResponse>, Status> {
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

    async fn stats(&self, _: Request<StatsRequest>) -> Result<Response<StatsResponse>, Status> {
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
        let c = calendar_from_proto(r.into_inner())?;
        check_tenant(&c.tenant_id)?;
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
        let r = r.into_inner();
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
        let tenant = r.into_inner().tenant_id;
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
        let p = policy_from_proto(r.into_inner());
        check_tenant(&p.tenant_id)?;
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
        let r = r.into_inner();
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
        let tenant = r.into_inner().tenant_id;
        let m = self.state.storage.manifest();
        let policies = m
            .sla_policies
            .iter()
            .filter(|p| tenant.is_empty() || p.tenant_id == tenant)
            .map(policy_to_proto)
            .collect();
        Ok(Response::new(ListSlaPoliciesResponse { policies }))
    }
}
