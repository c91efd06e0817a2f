-- automation_runs — one row per workflow per UTC day (tenant_id, workflow_id, day).
--
-- SPEC §3 "Automation": per workflow, triggers, completions, failures,
-- failure rate, duration percentiles.
--   triggers, completions, failures   automation.triggered / .completed / .failed
--   failure_rate        failures / (completions + failures): the share of
--                       finished runs that failed; NULL when none finished
--   conversations       distinct conversations the workflow touched
--   p50_s, p90_s, p95_s, p99_s, max_s, avg_s
--                       duration_ms / 1000 of completed runs (percentile_cont:
--                       exact, linear interpolation); NULL without durations
--
-- Decisions where SPEC is silent: runs count on the UTC day of their event;
-- durations of failed runs are left out of the percentiles (they measure
-- the work done, and a timeout would distort them).
CREATE VIEW automation_runs AS
SELECT
    tenant_id,
    workflow_id,
    date_trunc('day', event_time) AS day,
    count(*) FILTER (WHERE event_type = 'automation.triggered') AS triggers,
    count(*) FILTER (WHERE event_type = 'automation.completed') AS completions,
    count(*) FILTER (WHERE event_type = 'automation.failed') AS failures,
    CAST(count(*) FILTER (WHERE event_type = 'automation.failed') AS DOUBLE)
        / nullif(count(*) FILTER (WHERE event_type IN ('automation.completed', 'automation.failed')), 0)
        AS failure_rate,
    count(DISTINCT conversation_id) AS conversations,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms / 1000.0)
        FILTER (WHERE event_type = 'automation.completed') AS p50_s,
    percentile_cont(0.9) WITHIN GROUP (ORDER BY duration_ms / 1000.0)
        FILTER (WHERE event_type = 'automation.completed') AS p90_s,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms / 1000.0)
        FILTER (WHERE event_type = 'automation.completed') AS p95_s,
    percentile_cont(0.99) WITHIN GROUP (ORDER BY duration_ms / 1000.0)
        FILTER (WHERE event_type = 'automation.completed') AS p99_s,
    max(duration_ms / 1000.0) FILTER (WHERE event_type = 'automation.completed') AS max_s,
    avg(duration_ms / 1000.0) FILTER (WHERE event_type = 'automation.completed') AS avg_s
FROM events
WHERE event_type LIKE 'automation.%' AND workflow_id IS NOT NULL
GROUP BY tenant_id, workflow_id, date_trunc('day', event_time)
