-- conversations — one row per conversation (tenant_id, conversation_id).
--
-- SPEC §3/§4. The per-conversation facts every other metric starts from.
-- A conversation is any conversation_id seen on a conversation.*, message.*,
-- csat.* or bot.* event (custom.* events are never interpreted).
--
-- Columns (SPEC §4 names first):
--   channel                  the channel of conversation.created, else the first one seen
--   channels                 every channel seen, in order of first appearance
--   current_channel          the last channel set by conversation.created/.transferred
--   customer_id              first customer_id seen on the conversation
--   priority, team_id        current: last value set by created / priority_changed
--                            (priority) or created / assigned / transferred (team)
--   assignee_id              current: agent_id of the last conversation.assigned
--                            (or of a conversation.transferred that names one)
--   status                   current: last status of created / status_changed; 'open'
--                            when none was ever given
--   created_at               conversation.created, else the earliest event
--   last_event_at            the latest event of the conversation
--   first_customer_message_at, last_customer_message_at   public customer messages
--   first_agent_reply_at     first public agent message (bot messages and internal
--                            notes never count as replies)
--   first_response_s         first_agent_reply_at − least(created_at,
--                            first_customer_message_at); NULL until the reply
--   first_resolved_at        first transition to solved/closed
--   resolved_at              last transition to solved/closed; NULL while the
--                            current status is neither
--   first_resolution_s, resolution_s   from created_at to those
--   requester_wait_s         seconds in open and on_hold from created_at until
--                            resolved_at (pending excluded); NULL while unresolved
--   reopens                  transitions solved/closed → open/pending/on_hold
--   handoffs                 rows of the handoffs view (reassignments, transfers,
--                            bot handoffs)
--   agent_messages, customer_messages, bot_messages   public message.created by actor_type
--   internal_notes           message.created with is_public = false
--   csat_score               the latest csat.submitted score
--   sentiment                mean sentiment(body) of the public customer messages
--   is_abandoned             evaluated at query time with now(): no public agent
--                            or bot reply ever, and either solved/closed or the last
--                            customer message (created_at when there is none) is
--                            older than the abandonment window
--   abandon_window_s         600 for chat-like channels, 259200 (72 h) for email,
--                            web_form and api (by current_channel)
--   bot_contained            NULL without a bot session; else true when every bot
--                            session of the conversation was contained (bot_sessions)
--   sla_policy_id, sla_calendar_id   sla_policy_for(tenant, current priority,
--                            current channel) and that policy's calendar
--   *_business_s             the same durations in the policy's business calendar
--                            (business_seconds; no policy or no calendar = 24×7,
--                            so equal to the calendar figure)
--
-- Decisions where SPEC is silent:
--   * Ties in event_time are ordered by event_id.
--   * A transition solved → closed is not a new resolution: "transition to
--     solved/closed" means from a status that is neither.
--   * is_public NULL on a message counts as public (the ingest default).
--   * Bot replies for abandonment: public bot messages and bot.replied,
--     bot.fallback, bot.resolved events.
--   * The SLA policy follows the current priority and current channel
--     (policies re-apply when a conversation changes, as help desks do).
CREATE VIEW conversations AS
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
    status,
    created_at,
    last_event_at,
    first_customer_message_at,
    last_customer_message_at,
    first_agent_reply_at,
    first_response_s,
    first_response_business_s,
    first_resolved_at,
    resolved_at,
    first_resolution_s,
    first_resolution_business_s,
    resolution_s,
    resolution_business_s,
    requester_wait_s,
    reopens,
    handoffs,
    agent_messages,
    customer_messages,
    bot_messages,
    internal_notes,
    csat_score,
    sentiment,
    bot_replies = 0 AND agent_messages = 0
        AND (status IN ('solved', 'closed')
             OR CAST(coalesce(last_customer_message_at, created_at) AS BIGINT)
                < CAST(arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))') AS BIGINT) - abandon_window_s * 1000000) AS is_abandoned,
    abandon_window_s,
    bot_contained,
    sla_policy_id,
    sla_calendar_id
FROM conversation_state
