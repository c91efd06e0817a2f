-- bot_sessions — one row per bot session (tenant_id, conversation_id, started_at),
-- i.e. per bot.session_started event.
--
-- SPEC §3 "Bot containment". A session runs from its bot.session_started to
-- the next bot.session_started of the same conversation (or on). In it:
--   replies, fallbacks      bot.replied / bot.fallback events
--   handed_off, handoff_at  a bot.handoff happened
--   resolved, resolved_at   a bot.resolved happened (customer confirmed)
--   agent_followed          a public agent message follows the session start
--                           anywhere later in the conversation
--   contained               the session ends in bot.resolved (its last
--                           resolved/handoff event is bot.resolved), or it has
--                           no bot.handoff and no public agent message follows
--   dropped_off             evaluated at query time: neither resolved nor handed
--                           off (nor taken over by an agent without a formal
--                           handoff), and the customer has been silent for the
--                           abandonment window: the last public customer message
--                           in the session (the session start when none) is older
--                           than 10 min (chat-like channels) or 72 h (email,
--                           web_form, api)
--   channel                 the session event's channel, else the conversation's
--                           first channel
--
-- Decisions where SPEC is silent: bot messages sent as message.created
-- (actor_type = 'bot') are not counted as replies, so a platform that sends
-- both a message and bot.replied is not counted twice; intent is the last
-- intent the bot detected in the session.
CREATE VIEW bot_sessions AS
WITH ev AS (
    SELECT tenant_id, conversation_id, event_id, event_time, event_type, actor_type, channel,
           bot_id, intent, coalesce(is_public, true) AS is_public
    FROM events
    WHERE conversation_id IS NOT NULL
      AND (event_type LIKE 'bot.%' OR event_type IN ('message.created', 'conversation.created'))
),
conversation_channel AS (
    SELECT tenant_id, conversation_id,
        first_value(channel ORDER BY event_type <> 'conversation.created', event_time, event_id)
            FILTER (WHERE channel IS NOT NULL) AS channel
    FROM ev
    GROUP BY tenant_id, conversation_id
),
sessions AS (
    SELECT tenant_id, conversation_id, event_id, event_time AS started_at, bot_id, channel,
        lead(event_time) OVER (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id) AS next_started_at
    FROM ev
    WHERE event_type = 'bot.session_started'
),
inside AS (
    SELECT s.tenant_id, s.conversation_id, s.event_id, s.started_at,
        count(*) FILTER (WHERE e.event_type = 'bot.replied') AS replies,
        count(*) FILTER (WHERE e.event_type = 'bot.fallback') AS fallbacks,
        min(e.event_time) FILTER (WHERE e.event_type = 'bot.handoff') AS handoff_at,
        min(e.event_time) FILTER (WHERE e.event_type = 'bot.resolved') AS resolved_at,
        last_value(e.event_type ORDER BY e.event_time, e.event_id)
            FILTER (WHERE e.event_type IN ('bot.handoff', 'bot.resolved')) AS outcome,
        max(e.event_time) FILTER (WHERE e.event_type = 'message.created' AND e.is_public
                                  AND e.actor_type = 'customer') AS last_customer_message_at,
        last_value(e.intent ORDER BY e.event_time, e.event_id)
            FILTER (WHERE e.intent IS NOT NULL) AS intent,
        max(e.event_time) AS last_event_at
    FROM sessions s
    LEFT JOIN ev e
      ON e.tenant_id = s.tenant_id AND e.conversation_id = s.conversation_id
     AND e.event_time >= s.started_at
     AND (s.next_started_at IS NULL OR e.event_time < s.next_started_at)
    GROUP BY s.tenant_id, s.conversation_id, s.event_id, s.started_at
),
followed AS (
    SELECT s.tenant_id, s.event_id, count(e.event_id) > 0 AS agent_followed
    FROM sessions s
    LEFT JOIN ev e
      ON e.tenant_id = s.tenant_id AND e.conversation_id = s.conversation_id
     AND e.event_type = 'message.created' AND e.actor_type = 'agent' AND e.is_public
     AND e.event_time > s.started_at
    GROUP BY s.tenant_id, s.event_id
),
joined AS (
    SELECT s.tenant_id, s.conversation_id, s.bot_id,
        coalesce(s.channel, c.channel) AS channel,
        s.started_at, s.next_started_at,
        i.replies, i.fallbacks, i.intent,
        i.handoff_at, i.handoff_at IS NOT NULL AS handed_off,
        i.resolved_at, i.resolved_at IS NOT NULL AS resolved,
        i.outcome, i.last_customer_message_at, i.last_event_at,
        f.agent_followed,
        s.event_id
    FROM sessions s
    JOIN inside i ON i.tenant_id = s.tenant_id AND i.event_id = s.event_id
    JOIN followed f ON f.tenant_id = s.tenant_id AND f.event_id = s.event_id
    LEFT JOIN conversation_channel c
      ON c.tenant_id = s.tenant_id AND c.conversation_id = s.conversation_id
)
SELECT
    tenant_id,
    conversation_id,
    bot_id,
    channel,
    started_at,
    last_event_at,
    intent,
    replies,
    fallbacks,
    handed_off,
    handoff_at,
    resolved,
    resolved_at,
    agent_followed,
    coalesce(outcome = 'bot.resolved', false) OR (NOT handed_off AND NOT agent_followed) AS contained,
    NOT resolved AND NOT handed_off AND NOT agent_followed
        AND CAST(coalesce(last_customer_message_at, started_at) AS BIGINT)
            < CAST(arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS BIGINT)
              - CASE WHEN channel IN ('email', 'web_form', 'api') THEN 259200 ELSE 600 END * 1000000
        AS dropped_off,
    event_id
FROM joined
