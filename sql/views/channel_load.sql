-- channel_load — one row per channel per UTC hour with traffic
-- (tenant_id, channel, hour).
--
-- SPEC §3 "Channel load": conversations and messages per channel per bucket,
-- and share of total.
--   conversations        conversations created in the hour on the channel
--                        (conversation.created; its channel)
--   messages             public message.created in the hour on the channel
--                        (the message's channel, else its conversation's)
--   conversation_share   conversations / all conversations of the tenant in
--                        the hour (0–1); message_share likewise
--
-- Decision: UTC hour buckets; shares are per hour, so for a day recompute
-- them from the summed counts rather than averaging.
CREATE VIEW channel_load AS
WITH created AS (
    SELECT tenant_id, conversation_id,
        first_value(channel ORDER BY event_time, event_id) AS channel,
        min(event_time) AS created_at
    FROM events
    WHERE event_type = 'conversation.created' AND conversation_id IS NOT NULL AND channel IS NOT NULL
    GROUP BY tenant_id, conversation_id
),
counts AS (
    SELECT tenant_id, channel, date_trunc('hour', created_at) AS hour, 1 AS conversations, 0 AS messages
    FROM created
    UNION ALL
    SELECT m.tenant_id, coalesce(m.channel, c.channel), date_trunc('hour', m.event_time), 0, 1
    FROM events m
    LEFT JOIN created c ON c.tenant_id = m.tenant_id AND c.conversation_id = m.conversation_id
    WHERE m.event_type = 'message.created' AND coalesce(m.is_public, true)
),
per_channel AS (
    SELECT tenant_id, channel, hour, sum(conversations) AS conversations, sum(messages) AS messages
    FROM counts
    WHERE channel IS NOT NULL
    GROUP BY tenant_id, channel, hour
)
SELECT
    tenant_id,
    channel,
    hour,
    conversations,
    messages,
    CAST(conversations AS DOUBLE) / nullif(sum(conversations) OVER (PARTITION BY tenant_id, hour), 0)
        AS conversation_share,
    CAST(messages AS DOUBLE) / nullif(sum(messages) OVER (PARTITION BY tenant_id, hour), 0)
        AS message_share
FROM per_channel
