-- collisions — one row per colliding pair of agent messages
-- (tenant_id, conversation_id, second_event_id).
--
-- SPEC §3 "Collision": two distinct agents post public messages to one
-- conversation within 60 s of each other with no customer message between
-- them. Among the conversation's public agent and customer messages in time
-- order (event_time, event_id), a collision is an agent message directly
-- preceded by another agent's message at most 60 s earlier; since a
-- customer message would sit between them, "directly" is the "no customer
-- message between" rule. Bot messages and internal notes are ignored (they
-- neither collide nor separate).
--   first_agent_id, first_message_at, second_agent_id, second_message_at,
--   gap_s (≤ 60), first_event_id, second_event_id
--
-- Decisions where SPEC is silent: 60 s inclusive; a burst A, B, A within a
-- minute is two collisions (each consecutive pair).
CREATE VIEW collisions AS
WITH messages AS (
    SELECT tenant_id, conversation_id, event_id, event_time, actor_type, agent_id,
        lag(actor_type) OVER w AS prev_actor,
        lag(agent_id) OVER w AS prev_agent,
        lag(event_time) OVER w AS prev_time,
        lag(event_id) OVER w AS prev_event_id
    FROM events
    WHERE event_type = 'message.created' AND conversation_id IS NOT NULL
      AND coalesce(is_public, true) AND actor_type IN ('agent', 'customer')
    WINDOW w AS (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id)
)
SELECT
    tenant_id,
    conversation_id,
    prev_agent AS first_agent_id,
    prev_time AS first_message_at,
    agent_id AS second_agent_id,
    event_time AS second_message_at,
    (CAST(event_time AS BIGINT) - CAST(prev_time AS BIGINT)) / 1e6 AS gap_s,
    prev_event_id AS first_event_id,
    event_id AS second_event_id
FROM messages
WHERE actor_type = 'agent' AND prev_actor = 'agent'
  AND agent_id <> prev_agent
  AND CAST(event_time AS BIGINT) - CAST(prev_time AS BIGINT) <= 60000000
