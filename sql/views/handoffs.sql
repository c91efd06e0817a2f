-- handoffs — one row per handoff event (tenant_id, event_id).
--
-- SPEC §3 "Handoffs": agent-to-agent reassignments, conversation.transferred,
-- and bot.handoff. kind is one of
--   'reassignment'  conversation.assigned to an agent other than the current
--                   assignee (the first assignment is not a handoff, nor is
--                   re-assigning the same agent)
--   'transfer'      every conversation.transferred; cross_channel / cross_team
--                   say what it moved (a transfer may also name a new agent)
--   'bot'           bot.handoff (from_bot_id = the bot)
-- from_* is the state just before the event (last value set by
-- conversation.created / .assigned / .transferred); to_* the state after it.
--
-- Key columns: tenant_id, conversation_id, handoff_at, kind, from_agent_id,
-- to_agent_id, from_team_id, to_team_id, from_channel, to_channel,
-- cross_channel, cross_team, from_bot_id, event_id.
--
-- Decisions where SPEC is silent: a transfer counts once even when it also
-- changes the agent; ties in event_time are ordered by event_id.
CREATE VIEW handoffs AS
WITH steps AS (
    SELECT tenant_id, conversation_id, event_id, event_time, event_type, agent_id, team_id, channel, bot_id,
        last_value(agent_id) IGNORE NULLS OVER w AS prev_agent,
        last_value(team_id) IGNORE NULLS OVER w AS prev_team,
        last_value(channel) IGNORE NULLS OVER w AS prev_channel
    FROM events
    WHERE conversation_id IS NOT NULL
      AND event_type IN ('conversation.created', 'conversation.assigned',
                         'conversation.transferred', 'bot.handoff')
    WINDOW w AS (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
)
SELECT
    tenant_id,
    conversation_id,
    event_time AS handoff_at,
    CASE event_type
        WHEN 'conversation.assigned' THEN 'reassignment'
        WHEN 'conversation.transferred' THEN 'transfer'
        ELSE 'bot'
    END AS kind,
    prev_agent AS from_agent_id,
    coalesce(agent_id, CASE WHEN event_type = 'conversation.transferred' THEN prev_agent END) AS to_agent_id,
    prev_team AS from_team_id,
    coalesce(team_id, prev_team) AS to_team_id,
    prev_channel AS from_channel,
    coalesce(channel, prev_channel) AS to_channel,
    coalesce(channel <> prev_channel, false) AS cross_channel,
    coalesce(team_id <> prev_team, false) AS cross_team,
    CASE WHEN event_type = 'bot.handoff' THEN bot_id END AS from_bot_id,
    event_id
FROM steps
WHERE event_type = 'conversation.transferred'
   OR event_type = 'bot.handoff'
   OR (event_type = 'conversation.assigned' AND prev_agent IS NOT NULL AND agent_id <> prev_agent)
