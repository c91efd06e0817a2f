//! `AdminService` end to end: business calendars and SLA policies are
//! validated, persisted in the catalog (back after a restart) and readable as
//! SQL tables; compaction, retention and stats answer with real numbers.

use cxdb_proto::v1::admin_service_client::AdminServiceClient;
use cxdb_proto::v1::{
    ApplyRetentionRequest, BusinessCalendar, CompactRequest, DeleteCalendarRequest, FlushRequest,
    ListRequest, SetRetentionRequest, SlaPolicy, StatsRequest, WriteRequest,
};

use crate::server::{DAY0, TestServer, event};

fn calendar(tenant: &str, id: &str) -> BusinessCalendar {
    BusinessCalendar {
        tenant_id: tenant.into(),
        calendar_id: id.into(),
        timezone: "America/New_York".into(),
        weekly_hours_json: r#"{"mon":[["09:00","17:00"]],"tue":[["09:00","17:00"]]}"#.into(),
        holidays: vec!["2026-12-25".into()],
    }
}

#[tokio::test]
async fn calendars_and_policies_persist_and_show_in_sql() {
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut s = TestServer::start_in(tmp.path(), &[]).await;
    let mut admin = AdminServiceClient::new(s.channel().await);

    admin
        .upsert_calendar(calendar("acme", "support"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Bad input is refused with a message naming it, and changes nothing.
    let mut bad = calendar("acme", "broken");
    bad.timezone = "Mars/Olympus".into();
    let err = admin.upsert_calendar(bad).await.err();
    let err = err.unwrap_or_else(|| panic!("a bad time zone was accepted"));
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("Mars/Olympus"), "{}", err.message());
    let mut bad = calendar("acme", "broken");
    bad.weekly_hours_json = r#"{"someday":[["09:00","17:00"]]}"#.into();
    let err = admin.upsert_calendar(bad).await.err();
    assert_eq!(err.map(|e| e.code()), Some(tonic::Code::InvalidArgument));

    let policy = SlaPolicy {
        tenant_id: "acme".into(),
        policy_id: "urgent-chat".into(),
        priority: Some("urgent".into()),
        channel: Some("chat".into()),
        calendar_id: Some("support".into()),
        first_response_s: Some(300),
        next_response_s: Some(600),
        resolution_s: Some(14_400),
    };
    admin
        .upsert_sla_policy(policy.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let mut bad = policy.clone();
    bad.policy_id = "x".into();
    bad.channel = Some("pigeon".into());
    let err = admin.upsert_sla_policy(bad).await.err();
    let err = err.unwrap_or_else(|| panic!("an unknown channel was accepted"));
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("pigeon"), "{}", err.message());

    // Restart: both are still there, as API answers and as SQL tables.
    assert_eq!(s.terminate().await.map(|st| st.success()), Some(true));
    let s = TestServer::start_in(tmp.path(), &[]).await;
    let mut admin = AdminServiceClient::new(s.channel().await);
    let cals = admin
        .list_calendars(ListRequest {
            tenant_id: "acme".into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .calendars;
    assert_eq!(cals.len(), 1);
    assert_eq!(cals[0].holidays, vec!["2026-12-25".to_string()]);
    let policies = admin
        .list_sla_policies(ListRequest::default())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner()
        .policies;
    assert_eq!(policies, vec![policy]);
    assert_eq!(
        s.count(
            "SELECT count(*) FROM business_calendars \
             WHERE calendar_id = 'support' AND timezone = 'America/New_York'"
        )
        .await,
        1
    );
    assert_eq!(
        s.count(
            "SELECT count(*) FROM sla_policies \
             WHERE policy_id = 'urgent-chat' AND first_response_s = 300 AND channel = 'chat'"
        )
        .await,
        1
    );

    // The policy still uses the calendar: refused, naming the policy, and
    // nothing changes.
    let err = admin
        .delete_calendar(DeleteCalendarRequest {
            tenant_id: "acme".into(),
            calendar_id: "support".into(),
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("deleted a calendar a policy uses"));
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("urgent-chat"), "{}", err.message());
    assert_eq!(s.count("SELECT count(*) FROM business_calendars").await, 1);
}

#[tokio::test]
async fn compaction_retention_and_stats() {
    let s = TestServer::start().await;
    let mut ingest = s.ingest().await;
    let mut admin = AdminServiceClient::new(s.channel().await);
    // Three flushes of one event each: three small files in acme's DAY0
    // partition, and one old file of "old" (DAY0 is 2026-01-01).
    for i in 0..3 {
        ingest
            .write(WriteRequest {
                events: vec![event("acme", &format!("e{i}"), "chat")],
                atomic: false,
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        admin
            .flush(FlushRequest {})
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let mut old = event("old", "o1", "email");
    old.event_time_us = DAY0 - 400 * 86_400_000_000;
    ingest
        .write(WriteRequest {
            events: vec![old],
            atomic: false,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    admin
        .flush(FlushRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let stats = admin
        .stats(StatsRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!(
        (stats.accepted, stats.files, stats.persisted_rows),
        (4, 4, 4)
    );

    let c = admin
        .compact(CompactRequest { min_files: 2 })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((c.partitions, c.files_in, c.files_out), (1, 3, 1));
    assert_eq!(s.count("SELECT count(*) FROM events").await, 4);

    admin
        .set_retention(SetRetentionRequest {
            tenant_id: "old".into(),
            days: Some(30),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let err = admin
        .set_retention(SetRetentionRequest {
            tenant_id: "Not A Tenant".into(),
            days: Some(30),
        })
        .await
        .err();
    assert_eq!(err.map(|e| e.code()), Some(tonic::Code::InvalidArgument));
    let r = admin
        .apply_retention(ApplyRetentionRequest {})
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .into_inner();
    assert_eq!((r.partitions, r.files, r.rows), (1, 1, 1));
    assert_eq!(s.count("SELECT count(*) FROM events").await, 3);
    assert_eq!(
        s.count("SELECT count(*) FROM events WHERE tenant_id = 'old'")
            .await,
        0
    );
}
