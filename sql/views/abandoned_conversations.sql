-- abandoned_conversations — one row per abandoned conversation
-- (tenant_id, conversation_id), evaluated at query time.
--
-- SPEC §3 "Abandoned conversation": no public agent or bot reply ever, and
-- either solved/closed or the last customer message is older than the
-- abandonment window (10 min for chat-like channels, 72 h for email).
-- The rows of conversations with is_abandoned, plus:
--   reason           'closed_unanswered' (solved/closed without a reply) or
--                    'customer_gave_up' (silent for longer than the window)
--   abandon_window_s 600, or 259200 for email, web_form and api (by the
--                    conversation's current channel)
--   waited_s         from created_at to the last customer message (created_at
--                    when none): how long the customer stayed
--
-- Decisions where SPEC is silent: chat-like = every channel except email,
-- web_form and api (which are asynchronous like email); a conversation
-- without any customer message is measured from created_at.
CREATE VIEW abandoned_conversations AS
SELECT
    tenant_id,
    conversation_id,
    channel,
    current_channel,
    team_id,
    customer_id,
    status,
    created_at,
    last_customer_message_at,
    customer_messages,
    CASE WHEN status IN ('solved', 'closed') THEN 'closed_unanswered' ELSE 'customer_gave_up' END AS reason,
    abandon_window_s,
    (CAST(coalesce(last_customer_message_at, created_at) AS BIGINT) - CAST(created_at AS BIGINT)) / 1e6
        AS waited_s
FROM conversations
WHERE is_abandoned
