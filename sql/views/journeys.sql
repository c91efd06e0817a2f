-- journeys — one row per customer journey (tenant_id, journey_id).
--
-- SPEC §3 "Journey", over journey_steps (identity stitching and the 24 h
-- split are described there). Grouped by person_id as well as journey_id
-- (which determines it), so that a filter on person_id ("this customer's
-- journeys") reaches journey_steps' per-person windows instead of every
-- journey of the tenant being built first. Per journey:
--   person_id, started_at, ended_at (latest end of its steps)
--   steps, conversations, orders
--   channel_path        the conversations' channels in step order
--   handoffs            sum over its conversations
--   first_response_s    journey start → the first public agent reply of any of
--                       its conversations (NULL until one)
--   resolved            every conversation of the journey is resolved
--   resolution_s        journey start → the last resolved_at, when resolved
--   dropped             the journey ended unresolved: its last conversation
--                       is not resolved; NULL while the journey may still go on
--                       (last activity within 24 h of now()) and for journeys
--                       without conversations
--   csat_per_step       the conversations' CSAT scores in step order (NULL
--                       where none was given); avg_csat their mean
--   slowest_step, slowest_step_s, slowest_conversation_id
--                       the step with the largest duration_s
CREATE VIEW journeys AS
WITH conversation_facts AS (
    SELECT tenant_id, person_id, journey_id,
        count(*) AS conversations,
        array_agg(channel ORDER BY step) AS channel_path,
        sum(handoffs) AS handoffs,
        array_agg(csat_score ORDER BY step) AS csat_per_step,
        avg(csat_score) AS avg_csat,
        bool_and(resolved_at IS NOT NULL) AS resolved,
        max(resolved_at) AS last_resolved_at,
        last_value(resolved_at IS NOT NULL ORDER BY step) AS last_resolved
    FROM journey_steps
    WHERE kind = 'conversation'
    GROUP BY tenant_id, person_id, journey_id
),
first_replies AS (
    SELECT s.tenant_id, s.person_id, s.journey_id, min(c.first_agent_reply_at) AS first_agent_reply_at
    FROM journey_steps s
    JOIN conversations c ON c.tenant_id = s.tenant_id AND c.conversation_id = s.conversation_id
    WHERE s.kind = 'conversation'
    GROUP BY s.tenant_id, s.person_id, s.journey_id
),
all_steps AS (
    SELECT tenant_id, person_id, journey_id,
        min(started_at) AS started_at,
        max(ended_at) AS ended_at,
        count(*) AS steps,
        count(*) FILTER (WHERE kind = 'order') AS orders,
        first_value(step ORDER BY duration_s DESC NULLS LAST, step) AS slowest_step,
        max(duration_s) AS slowest_step_s,
        first_value(conversation_id ORDER BY duration_s DESC NULLS LAST, step) AS slowest_conversation_id
    FROM journey_steps
    GROUP BY tenant_id, person_id, journey_id
)
SELECT
    a.tenant_id,
    a.journey_id,
    a.person_id,
    a.started_at,
    a.ended_at,
    a.steps,
    coalesce(c.conversations, 0) AS conversations,
    a.orders,
    c.channel_path,
    coalesce(c.handoffs, 0) AS handoffs,
    (CAST(r.first_agent_reply_at AS BIGINT) - CAST(a.started_at AS BIGINT)) / 1e6 AS first_response_s,
    c.resolved,
    CASE WHEN c.resolved THEN (CAST(c.last_resolved_at AS BIGINT) - CAST(a.started_at AS BIGINT)) / 1e6 END
        AS resolution_s,
    CASE WHEN c.conversations IS NULL THEN NULL
         WHEN CAST(arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS BIGINT) - CAST(a.ended_at AS BIGINT) <= 86400000000 THEN NULL
         ELSE NOT c.last_resolved END AS dropped,
    c.csat_per_step,
    c.avg_csat,
    a.slowest_step,
    a.slowest_step_s,
    a.slowest_conversation_id
FROM all_steps a
LEFT JOIN conversation_facts c
    ON c.tenant_id = a.tenant_id AND c.person_id = a.person_id AND c.journey_id = a.journey_id
LEFT JOIN first_replies r
    ON r.tenant_id = a.tenant_id AND r.person_id = a.person_id AND r.journey_id = a.journey_id
