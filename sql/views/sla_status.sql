-- sla_status — one row per SLA target instance of a conversation:
-- (tenant_id, conversation_id, target, instance).
--
-- SPEC §3 "SLA". The policy is conversations.sla_policy_id
-- (sla_policy_for(tenant, priority, channel): the most specific match);
-- conversations without a policy, and targets the policy leaves NULL, have
-- no rows. Clocks run in the policy's business calendar (business_seconds /
-- business_add; NULL calendar = 24×7). Targets:
--   'first_response'  instance 1; starts at least(created_at, first public
--                     customer message), stops at the first public agent reply
--   'next_response'   instance = the reply number that answers; starts at the
--                     earliest public customer message after the previous
--                     public agent reply, stops at the next public agent reply
--                     (a customer wait after the last reply is an open instance)
--   'resolution'      instance 1; runs while the conversation is open or
--                     on_hold, pauses while pending, stops at the last transition
--                     to solved/closed (a reopen starts it again)
-- Columns:
--   status       'breached' when elapsed_s > target_s (stopped or not),
--                'achieved' when stopped within target, else 'active'
--   elapsed_s    business seconds on the clock until stopped_at or now()
--   remaining_s  target_s − elapsed_s while active, else NULL
--   due_at       when the clock reaches the target if it keeps running: for
--                response targets business_add(started_at, target_s); for
--                resolution from the running segment, NULL while paused or
--                achieved
--   breached_at  when elapsed crossed the target (NULL unless breached)
--   paused       resolution only: true while pending
--   stopped_by   'reply', 'resolution' or NULL while running
--
-- Decisions where SPEC is silent:
--   * Solving a conversation stops its response clocks too (help desks
--     fulfil every open target on solve): an unanswered first/next response
--     of a solved/closed conversation stops at resolved_at (stopped_by =
--     'resolution').
--   * Time while solved/closed before a reopen does not count towards
--     resolution, like pending.
--   * Evaluated at query time: active clocks are measured up to now().
CREATE VIEW sla_status AS
WITH conv AS (
    SELECT c.tenant_id, c.conversation_id, c.sla_policy_id, c.sla_calendar_id, c.created_at,
        c.first_customer_message_at, c.first_agent_reply_at, c.resolved_at, c.status,
        p.first_response_s, p.next_response_s, p.resolution_s
    FROM conversations c
    JOIN sla_policies p ON p.tenant_id = c.tenant_id AND p.policy_id = c.sla_policy_id
),
last_reply AS (
    SELECT tenant_id, conversation_id, max(reply_number) AS reply_number, max(replied_at) AS replied_at
    FROM replies
    GROUP BY tenant_id, conversation_id
),
open_wait AS (
    SELECT r.tenant_id, r.conversation_id, r.reply_number + 1 AS instance, min(e.event_time) AS since
    FROM last_reply r
    JOIN events e
      ON e.tenant_id = r.tenant_id AND e.conversation_id = r.conversation_id
     AND e.event_type = 'message.created' AND e.actor_type = 'customer' AND coalesce(e.is_public, true)
     AND e.event_time > r.replied_at
    GROUP BY r.tenant_id, r.conversation_id, r.reply_number
),
response_clocks AS (
    SELECT tenant_id, conversation_id, 'first_response' AS target, 1 AS instance,
        least(created_at, first_customer_message_at) AS started_at,
        first_agent_reply_at AS replied_at
    FROM conv
    WHERE first_response_s IS NOT NULL
    UNION ALL
    SELECT r.tenant_id, r.conversation_id, 'next_response', r.reply_number, r.waiting_since, r.replied_at
    FROM replies r
    JOIN conv c ON c.tenant_id = r.tenant_id AND c.conversation_id = r.conversation_id
    WHERE r.response_kind = 'next' AND r.waiting_since IS NOT NULL AND c.next_response_s IS NOT NULL
    UNION ALL
    SELECT w.tenant_id, w.conversation_id, 'next_response', w.instance, w.since, arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))')
    FROM open_wait w
    JOIN conv c ON c.tenant_id = w.tenant_id AND c.conversation_id = w.conversation_id
    WHERE c.next_response_s IS NOT NULL
),
response_rows AS (
    SELECT r.tenant_id, r.conversation_id, r.target, r.instance, c.sla_policy_id, c.sla_calendar_id,
        CASE r.target WHEN 'first_response' THEN c.first_response_s ELSE c.next_response_s END AS target_s,
        r.started_at,
        CASE WHEN r.replied_at IS NOT NULL THEN r.replied_at
             WHEN c.resolved_at IS NOT NULL AND c.resolved_at >= r.started_at THEN c.resolved_at
        END AS stopped_at,
        CASE WHEN r.replied_at IS NOT NULL THEN 'reply'
             WHEN c.resolved_at IS NOT NULL AND c.resolved_at >= r.started_at THEN 'resolution'
        END AS stopped_by
    FROM response_clocks r
    JOIN conv c ON c.tenant_id = r.tenant_id AND c.conversation_id = r.conversation_id
),
response_measured AS (
    SELECT *,
        business_seconds(started_at, coalesce(stopped_at, arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))')), sla_calendar_id, tenant_id) AS elapsed_s,
        business_add(started_at, CAST(target_s AS DOUBLE), sla_calendar_id, tenant_id) AS deadline
    FROM response_rows
),
-- Resolution: the status timeline, as in conversations.
initial_status AS (
    SELECT tenant_id, conversation_id, first_value(status ORDER BY event_time, event_id) AS status
    FROM events
    WHERE event_type = 'conversation.created' AND conversation_id IS NOT NULL AND status IS NOT NULL
    GROUP BY tenant_id, conversation_id
),
status_points AS (
    SELECT c.tenant_id, c.conversation_id, c.created_at AS at, 0 AS seq, '' AS event_id,
        coalesce(i.status, 'open') AS status
    FROM conv c
    LEFT JOIN initial_status i ON i.tenant_id = c.tenant_id AND i.conversation_id = c.conversation_id
    WHERE c.resolution_s IS NOT NULL
    UNION ALL
    SELECT e.tenant_id, e.conversation_id, e.event_time, 1, e.event_id, e.status
    FROM events e
    JOIN conv c ON c.tenant_id = e.tenant_id AND c.conversation_id = e.conversation_id
    WHERE e.event_type = 'conversation.status_changed' AND e.status IS NOT NULL
      AND c.resolution_s IS NOT NULL
),
segments AS (
    SELECT p.tenant_id, p.conversation_id, p.at, p.status,
        lead(p.at) OVER (PARTITION BY p.tenant_id, p.conversation_id ORDER BY p.at, p.seq, p.event_id) AS until
    FROM status_points p
),
running AS (
    SELECT s.tenant_id, s.conversation_id, s.at, s.until,
        business_seconds(s.at, coalesce(s.until, arrow_cast(now(), 'Timestamp(Microsecond, Some("UTC"))')), c.sla_calendar_id, c.tenant_id) AS seconds
    FROM segments s
    JOIN conv c ON c.tenant_id = s.tenant_id AND c.conversation_id = s.conversation_id
    WHERE s.status IN ('open', 'on_hold')
),
cumulative AS (
    SELECT *,
        coalesce(sum(seconds) OVER (PARTITION BY tenant_id, conversation_id ORDER BY at
                                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0.0) AS before_s
    FROM running
),
resolution_clock AS (
    SELECT c.tenant_id, c.conversation_id, c.sla_policy_id, c.sla_calendar_id, c.resolution_s AS target_s,
        c.created_at AS started_at,
        c.resolved_at AS stopped_at,
        c.status,
        coalesce(sum(k.seconds), 0.0) AS elapsed_s,
        -- the segment in which the clock crossed the target
        max(CASE WHEN k.before_s <= c.resolution_s AND k.before_s + k.seconds > c.resolution_s
                 THEN business_add(k.at, CAST(c.resolution_s AS DOUBLE) - k.before_s, c.sla_calendar_id, c.tenant_id)
            END) AS crossed_at,
        -- the running segment (open / on_hold now)
        max(CASE WHEN k.until IS NULL
                 THEN business_add(k.at, CAST(c.resolution_s AS DOUBLE) - k.before_s, c.sla_calendar_id, c.tenant_id)
            END) AS running_due_at
    FROM conv c
    LEFT JOIN cumulative k ON k.tenant_id = c.tenant_id AND k.conversation_id = c.conversation_id
    WHERE c.resolution_s IS NOT NULL
    GROUP BY c.tenant_id, c.conversation_id, c.sla_policy_id, c.sla_calendar_id, c.resolution_s,
             c.created_at, c.resolved_at, c.status
)
SELECT
    tenant_id, conversation_id, target, instance, sla_policy_id AS policy_id, sla_calendar_id AS calendar_id,
    target_s,
    CASE WHEN elapsed_s > target_s THEN 'breached'
         WHEN stopped_at IS NOT NULL THEN 'achieved'
         ELSE 'active' END AS status,
    started_at,
    stopped_at,
    stopped_by,
    elapsed_s,
    CASE WHEN elapsed_s <= target_s AND stopped_at IS NULL THEN target_s - elapsed_s END AS remaining_s,
    deadline AS due_at,
    CASE WHEN elapsed_s > target_s THEN deadline END AS breached_at,
    false AS paused
FROM response_measured
UNION ALL
SELECT
    tenant_id, conversation_id, 'resolution', 1, sla_policy_id, sla_calendar_id,
    target_s,
    CASE WHEN elapsed_s > target_s THEN 'breached'
         WHEN stopped_at IS NOT NULL THEN 'achieved'
         ELSE 'active' END,
    started_at,
    stopped_at,
    CASE WHEN stopped_at IS NOT NULL THEN 'resolution' END,
    elapsed_s,
    CASE WHEN elapsed_s <= target_s AND stopped_at IS NULL THEN target_s - elapsed_s END,
    CASE WHEN elapsed_s > target_s THEN crossed_at
         WHEN stopped_at IS NULL THEN running_due_at END,
    CASE WHEN elapsed_s > target_s THEN crossed_at END,
    status = 'pending'
FROM resolution_clock
