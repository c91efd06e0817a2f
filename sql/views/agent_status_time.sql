-- agent_status_time — one row per agent status period (tenant_id, agent_id,
-- started_at): from an agent.status_changed to the agent's next one.
--
-- SPEC §3 "Agent status durations come from agent.status_changed".
--   status        online / away / busy / offline
--   ended_at      the next agent.status_changed of the agent; NULL for the
--                 current status
--   duration_s    ended_at − started_at; NULL while current (SPEC: durations
--                 are NULL until the stopping event)
--   elapsed_s     up to ended_at or now(): the current status so far
--   day           UTC date of started_at
-- Time per status per day: SELECT agent_id, day, status, sum(duration_s) ...
--
-- Decisions where SPEC is silent: a period spanning midnight counts for the
-- day it started; repeating the same status starts a new period (kept, so
-- event counts stay visible; summing durations is unaffected).
CREATE VIEW agent_status_time AS
WITH periods AS (
    SELECT tenant_id, agent_id, status, event_time AS started_at, event_id,
        lead(event_time) OVER (PARTITION BY tenant_id, agent_id ORDER BY event_time, event_id) AS ended_at
    FROM events
    WHERE event_type = 'agent.status_changed' AND agent_id IS NOT NULL AND status IS NOT NULL
)
SELECT
    tenant_id,
    agent_id,
    status,
    started_at,
    ended_at,
    date_trunc('day', started_at) AS day,
    (CAST(ended_at AS BIGINT) - CAST(started_at AS BIGINT)) / 1e6 AS duration_s,
    (CAST(coalesce(ended_at, arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))')) AS BIGINT) - CAST(started_at AS BIGINT)) / 1e6 AS elapsed_s,
    event_id
FROM periods
