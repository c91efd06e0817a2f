-- replies — one row per public agent message (tenant_id, event_id), with the
-- response time it ends.
--
-- SPEC §3 "First response time" / "Next response time". Only public
-- message.created events with actor_type = 'agent' are replies: bot messages
-- and internal notes (is_public = false) never are, and do not interrupt a
-- customer's wait.
--   reply_number     1, 2, … in the conversation (event_time, then event_id)
--   response_kind    'first' for reply 1, else 'next'
--   waiting_since    reply 1: least(created_at, first public customer message)
--                    (conversations.created_at); later replies: the earliest
--                    public customer message since the previous reply, NULL
--                    when the customer sent none (nothing to respond to)
--   response_s       replied_at − waiting_since (Float64 seconds)
--   response_business_s   the same in the conversation's SLA calendar
--                    (business_seconds; 24×7 without one)
--   customer_messages_waiting   public customer messages answered by this reply
--
-- Key columns: tenant_id, conversation_id, reply_number, agent_id,
-- replied_at, response_kind, response_s, event_id.
CREATE VIEW replies AS
WITH messages AS (
    SELECT tenant_id, conversation_id, event_id, message_id, event_time, actor_type, agent_id, channel,
        sum(CASE WHEN actor_type = 'agent' THEN 1 ELSE 0 END) OVER (
            PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id
            ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS agent_seq
    FROM events
    WHERE event_type = 'message.created' AND conversation_id IS NOT NULL
      AND coalesce(is_public, true) AND actor_type IN ('agent', 'customer')
),
-- Customer messages after reply n are answered by reply n + 1.
waiting AS (
    SELECT tenant_id, conversation_id, agent_seq + 1 AS reply_number,
           min(event_time) AS since, count(*) AS customer_messages
    FROM messages
    WHERE actor_type = 'customer'
    GROUP BY tenant_id, conversation_id, agent_seq
),
answered AS (
    SELECT m.tenant_id, m.conversation_id, m.event_id, m.message_id, m.agent_id, m.channel,
        m.agent_seq AS reply_number,
        m.event_time AS replied_at,
        CASE WHEN m.agent_seq = 1 THEN least(c.created_at, w.since) ELSE w.since END AS waiting_since,
        coalesce(w.customer_messages, 0) AS customer_messages_waiting,
        c.sla_calendar_id
    FROM messages m
    JOIN conversations c ON c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id
    LEFT JOIN waiting w
      ON w.tenant_id = m.tenant_id AND w.conversation_id = m.conversation_id
     AND w.reply_number = m.agent_seq
    WHERE m.actor_type = 'agent'
)
SELECT
    tenant_id,
    conversation_id,
    reply_number,
    CASE WHEN reply_number = 1 THEN 'first' ELSE 'next' END AS response_kind,
    agent_id,
    channel,
    replied_at,
    waiting_since,
    (CAST(replied_at AS BIGINT) - CAST(waiting_since AS BIGINT)) / 1e6 AS response_s,
    business_seconds(waiting_since, replied_at, sla_calendar_id, tenant_id) AS response_business_s,
    customer_messages_waiting,
    message_id,
    event_id
FROM answered
