-- agent_activity — one row per agent per UTC day (tenant_id, agent_id, day)
-- with any activity.
--
-- SPEC §3 (replies, response times, resolutions and CSAT attributed to
-- agents). Columns:
--   public_replies           public agent messages (replies view; bot messages
--                            and internal notes are never replies)
--   conversations_replied    distinct conversations with a public reply
--   internal_notes           message.created by the agent with is_public = false
--   first_responses, avg_first_response_s   replies that were a conversation's
--                            first response, and their mean response_s
--   avg_next_response_s      mean response_s of 'next' replies with a waiting
--                            customer
--   assignments              conversation.assigned naming the agent
--   resolved                 conversations whose resolved_at falls on the day
--                            and whose current assignee is the agent
--   csat_responses, csat_satisfied, avg_csat   counted CSAT scores (csat view)
--                            submitted that day for conversations assigned to the
--                            agent
--
-- Decisions where SPEC is silent: days are UTC; resolutions and CSAT go to
-- the current assignee (the person who owns the outcome), replies to their
-- author.
CREATE VIEW agent_activity AS
WITH parts AS (
    SELECT tenant_id, agent_id, date_trunc('day', replied_at) AS day,
        1 AS public_replies, conversation_id AS replied_conversation,
        0 AS internal_notes,
        CASE WHEN response_kind = 'first' THEN 1 ELSE 0 END AS first_responses,
        CASE WHEN response_kind = 'first' THEN response_s END AS first_response_s,
        CASE WHEN response_kind = 'next' THEN response_s END AS next_response_s,
        0 AS assignments, 0 AS resolved, CAST(NULL AS INT) AS csat_score
    FROM replies
    WHERE agent_id IS NOT NULL
    UNION ALL
    SELECT tenant_id, agent_id, date_trunc('day', event_time),
        0, CAST(NULL AS VARCHAR), 1, 0, CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), 0, 0, CAST(NULL AS INT)
    FROM events
    WHERE event_type = 'message.created' AND actor_type = 'agent' AND NOT coalesce(is_public, true)
      AND agent_id IS NOT NULL
    UNION ALL
    SELECT tenant_id, agent_id, date_trunc('day', event_time),
        0, CAST(NULL AS VARCHAR), 0, 0, CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), 1, 0, CAST(NULL AS INT)
    FROM events
    WHERE event_type = 'conversation.assigned' AND agent_id IS NOT NULL
    UNION ALL
    SELECT tenant_id, assignee_id, date_trunc('day', resolved_at),
        0, CAST(NULL AS VARCHAR), 0, 0, CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), 0, 1, CAST(NULL AS INT)
    FROM conversations
    WHERE resolved_at IS NOT NULL AND assignee_id IS NOT NULL
    UNION ALL
    SELECT tenant_id, assignee_id, day,
        0, CAST(NULL AS VARCHAR), 0, 0, CAST(NULL AS DOUBLE), CAST(NULL AS DOUBLE), 0, 0, csat_score
    FROM csat
    WHERE assignee_id IS NOT NULL
)
SELECT
    tenant_id,
    agent_id,
    day,
    sum(public_replies) AS public_replies,
    count(DISTINCT replied_conversation) AS conversations_replied,
    sum(internal_notes) AS internal_notes,
    sum(first_responses) AS first_responses,
    avg(first_response_s) AS avg_first_response_s,
    avg(next_response_s) AS avg_next_response_s,
    sum(assignments) AS assignments,
    sum(resolved) AS resolved,
    count(csat_score) AS csat_responses,
    count(*) FILTER (WHERE csat_score >= 4) AS csat_satisfied,
    avg(csat_score) AS avg_csat
FROM parts
GROUP BY tenant_id, agent_id, day
