-- agent_concurrency — one row per agent per UTC hour in which the agent had
-- at least one open assigned conversation (tenant_id, agent_id, hour).
--
-- SPEC §3 "Agent concurrency": conversations assigned to the agent and not
-- solved/closed at an instant. A conversation counts for its current
-- assignee (last conversation.assigned, or a transfer naming an agent) while
-- its status (last created / status_changed status, 'open' by default) is
-- neither solved nor closed; pending and on_hold count. Running intervals
-- end at now().
--   max_concurrent   the highest count at any instant of the hour
--   avg_concurrent   time-weighted mean over the hour (the elapsed part of
--                    the current hour): sum(count × seconds) / seconds
--   conversations    distinct conversations counted at some instant of the hour
--
-- Decision: buckets are UTC hours (finer than a day, so a shift's peak is
-- visible; roll up with max(max_concurrent) and avg(avg_concurrent)).
CREATE VIEW agent_concurrency AS
WITH changes AS (
    SELECT tenant_id, conversation_id, event_time, event_id,
        last_value(CASE WHEN event_type IN ('conversation.assigned', 'conversation.transferred') THEN agent_id END)
            IGNORE NULLS OVER w AS assignee,
        last_value(CASE WHEN event_type IN ('conversation.created', 'conversation.status_changed') THEN status END)
            IGNORE NULLS OVER w AS status,
        lead(event_time) OVER (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id) AS until
    FROM events
    WHERE conversation_id IS NOT NULL
      AND event_type IN ('conversation.created', 'conversation.assigned', 'conversation.transferred',
                         'conversation.status_changed')
    WINDOW w AS (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
intervals AS (
    SELECT tenant_id, assignee AS agent_id, conversation_id, event_time AS start_at,
        coalesce(until, arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))')) AS end_at
    FROM changes
    WHERE assignee IS NOT NULL AND coalesce(status, 'open') NOT IN ('solved', 'closed')
      AND coalesce(until, arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))')) > event_time
),
deltas AS (
    SELECT tenant_id, agent_id, at, sum(delta) AS delta
    FROM (
        SELECT tenant_id, agent_id, start_at AS at, 1 AS delta FROM intervals
        UNION ALL
        SELECT tenant_id, agent_id, end_at, -1 FROM intervals
    ) d
    GROUP BY tenant_id, agent_id, at
),
levels AS (
    SELECT tenant_id, agent_id, at AS start_at,
        lead(at) OVER (PARTITION BY tenant_id, agent_id ORDER BY at) AS end_at,
        sum(delta) OVER (PARTITION BY tenant_id, agent_id ORDER BY at
                         ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS level
    FROM deltas
),
-- range() yields nanosecond timestamps: back to the events' microseconds.
level_hours AS (
    SELECT tenant_id, agent_id, start_at, end_at, level,
        arrow_cast(hour_ns, 'Timestamp(Microsecond, Some("UTC"))') AS hour
    FROM (
        SELECT *, unnest(range(date_trunc('hour', start_at), end_at, INTERVAL '1 hour')) AS hour_ns
        FROM levels
        WHERE level > 0 AND end_at IS NOT NULL
    ) l
),
per_hour AS (
    SELECT tenant_id, agent_id, hour,
        max(level) AS max_concurrent,
        sum(level * (CAST(least(end_at, hour + INTERVAL '1 hour') AS BIGINT)
                     - CAST(greatest(start_at, hour) AS BIGINT)) / 1e6) AS level_seconds
    FROM level_hours
    GROUP BY tenant_id, agent_id, hour
),
conversation_hours AS (
    SELECT tenant_id, agent_id, arrow_cast(hour_ns, 'Timestamp(Microsecond, Some("UTC"))') AS hour,
        count(DISTINCT conversation_id) AS conversations
    FROM (
        SELECT tenant_id, agent_id, conversation_id,
            unnest(range(date_trunc('hour', start_at), end_at, INTERVAL '1 hour')) AS hour_ns
        FROM intervals
    ) h
    GROUP BY tenant_id, agent_id, hour_ns
)
SELECT
    p.tenant_id,
    p.agent_id,
    p.hour,
    p.max_concurrent,
    p.level_seconds
        / least(3600.0, (CAST(arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS BIGINT) - CAST(p.hour AS BIGINT)) / 1e6) AS avg_concurrent,
    c.conversations
FROM per_hour p
JOIN conversation_hours c ON c.tenant_id = p.tenant_id AND c.agent_id = p.agent_id AND c.hour = p.hour
