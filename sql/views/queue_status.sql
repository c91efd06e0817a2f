-- queue_status — one row per team queue, now (tenant_id, team_id).
--
-- SPEC §3 "Queue depth": at an instant (query time, now()), per team:
-- conversations open and unassigned; wait = now − created; backlog by age.
--   depth             conversations whose current status is 'open' and that
--                     have no assignee (conversations view), per current team
--                     (team_id NULL = no team)
--   oldest_wait_s, avg_wait_s   now() − created_at over those
--   age_under_15m, age_15m_1h, age_1h_4h, age_4h_24h, age_over_24h
--                     the backlog by wait (lower bound inclusive)
--   open_assigned     open conversations of the team that have an assignee
--   on_hold, pending  conversations of the team in those statuses
-- Teams with nothing open, pending or on hold have no row.
CREATE VIEW queue_status AS
WITH c AS (
    SELECT tenant_id, team_id, status, assignee_id,
        (CAST(arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS BIGINT) - CAST(created_at AS BIGINT)) / 1e6 AS wait_s
    FROM conversations
    WHERE status IN ('open', 'pending', 'on_hold')
)
SELECT
    tenant_id,
    team_id,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL) AS depth,
    max(wait_s) FILTER (WHERE status = 'open' AND assignee_id IS NULL) AS oldest_wait_s,
    avg(wait_s) FILTER (WHERE status = 'open' AND assignee_id IS NULL) AS avg_wait_s,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL AND wait_s < 900) AS age_under_15m,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL AND wait_s >= 900 AND wait_s < 3600) AS age_15m_1h,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL AND wait_s >= 3600 AND wait_s < 14400) AS age_1h_4h,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL AND wait_s >= 14400 AND wait_s < 86400) AS age_4h_24h,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NULL AND wait_s >= 86400) AS age_over_24h,
    count(*) FILTER (WHERE status = 'open' AND assignee_id IS NOT NULL) AS open_assigned,
    count(*) FILTER (WHERE status = 'on_hold') AS on_hold,
    count(*) FILTER (WHERE status = 'pending') AS pending
FROM c
GROUP BY tenant_id, team_id
