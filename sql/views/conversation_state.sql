-- conversation_state — one row per conversation (tenant_id, conversation_id):
-- every column of `conversations` that does not depend on the time of the
-- query (all but is_abandoned), plus bot_replies and first_event_at (the
-- conversation's earliest event). Column meanings: see conversations.sql.
--
-- Materialized: the query layer keeps this view's rows in memory and
-- maintains them incrementally. A write marks the conversations it touched;
-- the next query recomputes exactly those conversations from their events
-- (a conversation's row depends only on its own events and the SLA
-- configuration) and swaps their rows in. Removing events (retention) or
-- changing calendars / SLA policies rebuilds it. See
-- crates/cxdb-query/src/materialized.rs.
CREATE VIEW conversation_state AS
WITH ev AS (
    SELECT *,
        event_type = 'message.created' AND coalesce(is_public, true) AS is_public_message
    FROM events
    WHERE conversation_id IS NOT NULL
      AND (event_type LIKE 'conversation.%' OR event_type LIKE 'message.%'
           OR event_type LIKE 'csat.%' OR event_type LIKE 'bot.%')
),
facts AS (
    SELECT tenant_id, conversation_id,
        coalesce(min(event_time) FILTER (WHERE event_type = 'conversation.created'),
                 min(event_time)) AS created_at,
        max(event_time) AS last_event_at,
        min(event_time) AS first_event_at,
        first_value(channel ORDER BY event_type <> 'conversation.created', event_time, event_id)
            FILTER (WHERE channel IS NOT NULL) AS channel,
        last_value(channel ORDER BY event_time, event_id)
            FILTER (WHERE channel IS NOT NULL
                    AND event_type IN ('conversation.created', 'conversation.transferred')) AS set_channel,
        first_value(customer_id ORDER BY event_time, event_id)
            FILTER (WHERE customer_id IS NOT NULL) AS customer_id,
        last_value(priority ORDER BY event_time, event_id)
            FILTER (WHERE priority IS NOT NULL
                    AND event_type IN ('conversation.created', 'conversation.priority_changed')) AS priority,
        last_value(team_id ORDER BY event_time, event_id)
            FILTER (WHERE team_id IS NOT NULL
                    AND event_type IN ('conversation.created', 'conversation.assigned',
                                       'conversation.transferred')) AS team_id,
        last_value(agent_id ORDER BY event_time, event_id)
            FILTER (WHERE agent_id IS NOT NULL
                    AND event_type IN ('conversation.assigned', 'conversation.transferred')) AS assignee_id,
        last_value(status ORDER BY event_time, event_id)
            FILTER (WHERE status IS NOT NULL
                    AND event_type IN ('conversation.created', 'conversation.status_changed')) AS status,
        first_value(status ORDER BY event_time, event_id)
            FILTER (WHERE status IS NOT NULL AND event_type = 'conversation.created') AS initial_status,
        min(event_time) FILTER (WHERE is_public_message AND actor_type = 'customer') AS first_customer_message_at,
        max(event_time) FILTER (WHERE is_public_message AND actor_type = 'customer') AS last_customer_message_at,
        min(event_time) FILTER (WHERE is_public_message AND actor_type = 'agent') AS first_agent_reply_at,
        count(*) FILTER (WHERE is_public_message AND actor_type = 'agent') AS agent_messages,
        count(*) FILTER (WHERE is_public_message AND actor_type = 'customer') AS customer_messages,
        count(*) FILTER (WHERE is_public_message AND actor_type = 'bot') AS bot_messages,
        count(*) FILTER (WHERE event_type = 'message.created' AND NOT coalesce(is_public, true)) AS internal_notes,
        count(*) FILTER (WHERE (is_public_message AND actor_type = 'bot')
                            OR event_type IN ('bot.replied', 'bot.fallback', 'bot.resolved')) AS bot_replies,
        last_value(csat_score ORDER BY event_time, event_id)
            FILTER (WHERE event_type = 'csat.submitted' AND csat_score IS NOT NULL) AS csat_score,
        avg(sentiment(body))
            FILTER (WHERE is_public_message AND actor_type = 'customer' AND body <> '') AS sentiment
    FROM ev
    GROUP BY tenant_id, conversation_id
),
channel_firsts AS (
    SELECT tenant_id, conversation_id, channel, min(event_time) AS first_at
    FROM ev
    WHERE channel IS NOT NULL
    GROUP BY tenant_id, conversation_id, channel
),
channel_lists AS (
    SELECT tenant_id, conversation_id, array_agg(channel ORDER BY first_at, channel) AS channels
    FROM channel_firsts
    GROUP BY tenant_id, conversation_id
),
-- The status timeline: the initial status at created_at, then every change.
status_points AS (
    SELECT tenant_id, conversation_id, created_at AS at, 0 AS seq, '' AS event_id,
           coalesce(initial_status, 'open') AS status
    FROM facts
    UNION ALL
    SELECT tenant_id, conversation_id, event_time, 1, event_id, status
    FROM ev
    WHERE event_type = 'conversation.status_changed' AND status IS NOT NULL
),
status_timeline AS (
    SELECT tenant_id, conversation_id, at, seq, status,
        lag(status) OVER (PARTITION BY tenant_id, conversation_id ORDER BY at, seq, event_id) AS previous,
        lead(at) OVER (PARTITION BY tenant_id, conversation_id ORDER BY at, seq, event_id) AS until
    FROM status_points
),
status_facts AS (
    SELECT tenant_id, conversation_id,
        min(at) FILTER (WHERE seq = 1 AND status IN ('solved', 'closed')
                        AND previous NOT IN ('solved', 'closed')) AS first_resolved_at,
        max(at) FILTER (WHERE seq = 1 AND status IN ('solved', 'closed')
                        AND previous NOT IN ('solved', 'closed')) AS last_resolved_at,
        count(*) FILTER (WHERE seq = 1 AND previous IN ('solved', 'closed')
                         AND status IN ('open', 'pending', 'on_hold')) AS reopens
    FROM status_timeline
    GROUP BY tenant_id, conversation_id
),
current AS (
    SELECT f.*,
        coalesce(f.status, f.initial_status, 'open') AS current_status,
        coalesce(f.set_channel, f.channel) AS current_channel,
        CASE WHEN coalesce(f.status, f.initial_status, 'open') IN ('solved', 'closed')
             THEN s.last_resolved_at END AS resolved_at,
        s.first_resolved_at,
        s.reopens
    FROM facts f
    JOIN status_facts s ON s.tenant_id = f.tenant_id AND s.conversation_id = f.conversation_id
),
-- Time in open / on_hold before the last resolution, per conversation.
waits AS (
    SELECT t.tenant_id, t.conversation_id,
        sum((CAST(least(t.until, c.resolved_at) AS BIGINT) - CAST(t.at AS BIGINT)) / 1e6) AS requester_wait_s
    FROM status_timeline t
    JOIN current c ON c.tenant_id = t.tenant_id AND c.conversation_id = t.conversation_id
    WHERE t.status IN ('open', 'on_hold') AND c.resolved_at IS NOT NULL AND t.at < c.resolved_at
    GROUP BY t.tenant_id, t.conversation_id
),
handoff_counts AS (
    SELECT tenant_id, conversation_id, count(*) AS handoffs
    FROM handoffs
    GROUP BY tenant_id, conversation_id
),
bot AS (
    SELECT tenant_id, conversation_id, bool_and(contained) AS bot_contained
    FROM bot_sessions
    GROUP BY tenant_id, conversation_id
),
policy AS (
    SELECT c.tenant_id, c.conversation_id, p.policy_id AS sla_policy_id, p.calendar_id AS sla_calendar_id
    FROM current c
    JOIN sla_policies p
      ON p.tenant_id = c.tenant_id
     AND p.policy_id = sla_policy_for(c.tenant_id, c.priority, c.current_channel)
),
measured AS (
    SELECT c.*,
        ch.channels,
        least(c.created_at, c.first_customer_message_at) AS response_clock_start,
        CASE WHEN c.current_channel IN ('email', 'web_form', 'api') THEN 259200 ELSE 600 END AS abandon_window_s,
        coalesce(w.requester_wait_s, CASE WHEN c.resolved_at IS NOT NULL THEN 0.0 END) AS requester_wait_s,
        coalesce(h.handoffs, 0) AS handoffs,
        b.bot_contained,
        p.sla_policy_id,
        p.sla_calendar_id
    FROM current c
    LEFT JOIN channel_lists ch ON ch.tenant_id = c.tenant_id AND ch.conversation_id = c.conversation_id
    LEFT JOIN waits w ON w.tenant_id = c.tenant_id AND w.conversation_id = c.conversation_id
    LEFT JOIN handoff_counts h ON h.tenant_id = c.tenant_id AND h.conversation_id = c.conversation_id
    LEFT JOIN bot b ON b.tenant_id = c.tenant_id AND b.conversation_id = c.conversation_id
    LEFT JOIN policy p ON p.tenant_id = c.tenant_id AND p.conversation_id = c.conversation_id
)
SELECT
    tenant_id,
    conversation_id,
    channel,
    channels,
    current_channel,
    customer_id,
    priority,
    team_id,
    assignee_id,
    current_status AS status,
    created_at,
    last_event_at,
    first_customer_message_at,
    last_customer_message_at,
    first_agent_reply_at,
    (CAST(first_agent_reply_at AS BIGINT) - CAST(response_clock_start AS BIGINT)) / 1e6 AS first_response_s,
    business_seconds(response_clock_start, first_agent_reply_at, sla_calendar_id, tenant_id)
        AS first_response_business_s,
    first_resolved_at,
    resolved_at,
    (CAST(first_resolved_at AS BIGINT) - CAST(created_at AS BIGINT)) / 1e6 AS first_resolution_s,
    business_seconds(created_at, first_resolved_at, sla_calendar_id, tenant_id)
        AS first_resolution_business_s,
    (CAST(resolved_at AS BIGINT) - CAST(created_at AS BIGINT)) / 1e6 AS resolution_s,
    business_seconds(created_at, resolved_at, sla_calendar_id, tenant_id) AS resolution_business_s,
    requester_wait_s,
    reopens,
    handoffs,
    agent_messages,
    customer_messages,
    bot_messages,
    internal_notes,
    csat_score,
    sentiment,
    bot_replies,
    first_event_at,
    abandon_window_s,
    bot_contained,
    sla_policy_id,
    sla_calendar_id
FROM measured
