-- message_sentiment — one row per message with text (tenant_id, event_id).
--
-- SPEC §3 "Sentiment": sentiment(body) in [-1, 1] for every message.created
-- with a non-empty body, to aggregate per conversation, channel, agent and
-- day with GROUP BY (conversations.sentiment is the mean over the public
-- customer messages).
-- Columns: tenant_id, conversation_id, event_id, message_id, sent_at, day
-- (UTC), channel (the message's, else the conversation's first channel),
-- actor_type, agent_id (the author of an agent message), assignee_id (the
-- conversation's current assignee, for "sentiment of the customers an agent
-- serves"), team_id, is_public, sentiment.
--
-- Decisions where SPEC is silent: internal notes and bot messages are
-- included (filter on is_public / actor_type); an empty body has no row.
CREATE VIEW message_sentiment AS
SELECT
    m.tenant_id,
    m.conversation_id,
    m.event_time AS sent_at,
    date_trunc('day', m.event_time) AS day,
    coalesce(m.channel, c.channel) AS channel,
    m.actor_type,
    CASE WHEN m.actor_type = 'agent' THEN m.agent_id END AS agent_id,
    c.assignee_id,
    c.team_id,
    coalesce(m.is_public, true) AS is_public,
    sentiment(m.body) AS sentiment,
    m.message_id,
    m.event_id
FROM events m
LEFT JOIN conversations c ON c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id
WHERE m.event_type = 'message.created' AND m.body IS NOT NULL AND m.body <> ''
