-- traffic — one row per UTC hour with new conversations (tenant_id, hour).
--
-- SPEC §3 "Traffic spike": a bucket whose volume exceeds the seasonal
-- baseline — the same weekday and hour over the previous 4 weeks — by
-- median + k·MAD with k = 3.
--   conversations      conversations created in the hour (conversation.created)
--   baseline_weeks     how many of the 4 previous same weekday-hours lie inside
--                      the tenant's history (not before its first event); a
--                      same hour with no conversation counts as 0
--   baseline_median    median of those volumes
--   baseline_mad       median absolute deviation from baseline_median
--   threshold          baseline_median + 3 × baseline_mad
--   is_spike           conversations > threshold, with at least 2 baseline
--                      weeks (false with fewer: not enough history)
--
-- Decisions where SPEC is silent: UTC weekday-hours; only hours with at
-- least one conversation have a row (a drop is detect_anomalies' job).
CREATE VIEW traffic AS
WITH created AS (
    SELECT tenant_id, conversation_id, min(event_time) AS created_at
    FROM events
    WHERE event_type = 'conversation.created' AND conversation_id IS NOT NULL
    GROUP BY tenant_id, conversation_id
),
volume AS (
    SELECT tenant_id, date_trunc('hour', created_at) AS hour, count(*) AS conversations
    FROM created
    GROUP BY tenant_id, date_trunc('hour', created_at)
),
history AS (
    SELECT tenant_id, date_trunc('hour', min(event_time)) AS since
    FROM events
    GROUP BY tenant_id
),
past_hours AS (
    SELECT tenant_id, hour, hour - INTERVAL '7 days' AS past FROM volume
    UNION ALL
    SELECT tenant_id, hour, hour - INTERVAL '14 days' FROM volume
    UNION ALL
    SELECT tenant_id, hour, hour - INTERVAL '21 days' FROM volume
    UNION ALL
    SELECT tenant_id, hour, hour - INTERVAL '28 days' FROM volume
),
past AS (
    SELECT p.tenant_id, p.hour, CAST(coalesce(v.conversations, 0) AS DOUBLE) AS volume
    FROM past_hours p
    JOIN history h ON h.tenant_id = p.tenant_id AND p.past >= h.since
    LEFT JOIN volume v ON v.tenant_id = p.tenant_id AND v.hour = p.past
),
medians AS (
    SELECT tenant_id, hour, count(*) AS weeks, median(volume) AS med
    FROM past
    GROUP BY tenant_id, hour
),
mads AS (
    SELECT p.tenant_id, p.hour, median(abs(p.volume - m.med)) AS mad
    FROM past p
    JOIN medians m ON m.tenant_id = p.tenant_id AND m.hour = p.hour
    GROUP BY p.tenant_id, p.hour
)
SELECT
    v.tenant_id,
    v.hour,
    v.conversations,
    coalesce(m.weeks, 0) AS baseline_weeks,
    m.med AS baseline_median,
    d.mad AS baseline_mad,
    m.med + 3 * d.mad AS threshold,
    coalesce(m.weeks >= 2 AND v.conversations > m.med + 3 * d.mad, false) AS is_spike
FROM volume v
LEFT JOIN medians m ON m.tenant_id = v.tenant_id AND m.hour = v.hour
LEFT JOIN mads d ON d.tenant_id = v.tenant_id AND d.hour = v.hour
