-- bottlenecks — one row per workflow step per UTC day (tenant_id, kind,
-- step, day), for steps that finished that day.
--
-- SPEC §3 "Bottleneck": per workflow step (status, queue or assignment
-- stage), time spent, compared with its own trailing baseline; steps above
-- p90 of baseline are flagged. Step instances (finished ones; day = UTC
-- date the instance ended):
--   kind 'status'      step = open / pending / on_hold: a stay in that status,
--                      from the status change to the next one
--   kind 'queue'       step = team_id: from the conversation entering the team
--                      (conversation.created or .transferred naming the team)
--                      to its next conversation.assigned (or to the next
--                      team change, whichever is first)
--   kind 'assignment'  step = 'assigned': from conversation.assigned to the
--                      assignee's next public message
-- Columns: instances, total_s, avg_s, p50_s, p90_s of the day;
-- baseline_instances and baseline_p90_s over the instances of the same
-- (kind, step) that ended in the 28 days before the day;
-- is_bottleneck = avg_s > baseline_p90_s with at least 5 baseline instances.
--
-- Decisions where SPEC is silent: trailing baseline = previous 28 days;
-- the day's mean is compared (one slow outlier per day does not flag a
-- step with many instances, a generally slow day does); fewer than 5
-- baseline instances is too little history to flag anything.
CREATE VIEW bottlenecks AS
WITH status_points AS (
    SELECT tenant_id, conversation_id, event_time, event_id, coalesce(status, 'open') AS status,
        lead(event_time) OVER (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id) AS until
    FROM events
    WHERE conversation_id IS NOT NULL
      AND (event_type = 'conversation.created'
           OR (event_type = 'conversation.status_changed' AND status IS NOT NULL))
),
flow AS (
    SELECT tenant_id, conversation_id, event_time, event_id, event_type, team_id, agent_id,
        first_value(CASE WHEN event_type = 'conversation.assigned' THEN event_time END) IGNORE NULLS
            OVER later AS next_assigned_at,
        first_value(CASE WHEN event_type IN ('conversation.created', 'conversation.transferred')
                          AND team_id IS NOT NULL THEN event_time END) IGNORE NULLS
            OVER later AS next_team_at
    FROM events
    WHERE conversation_id IS NOT NULL
      AND event_type IN ('conversation.created', 'conversation.transferred', 'conversation.assigned')
    WINDOW later AS (PARTITION BY tenant_id, conversation_id ORDER BY event_time, event_id
                     ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
),
assignment_replies AS (
    SELECT a.tenant_id, a.event_id, a.event_time AS started_at, min(m.event_time) AS ended_at
    FROM events a
    JOIN events m
      ON m.tenant_id = a.tenant_id AND m.conversation_id = a.conversation_id
     AND m.event_type = 'message.created' AND m.actor_type = 'agent' AND coalesce(m.is_public, true)
     AND m.agent_id = a.agent_id AND m.event_time >= a.event_time
    WHERE a.event_type = 'conversation.assigned' AND a.conversation_id IS NOT NULL
    GROUP BY a.tenant_id, a.event_id, a.event_time
),
instances AS (
    SELECT tenant_id, 'status' AS kind, status AS step, event_time AS started_at, until AS ended_at
    FROM status_points
    WHERE until IS NOT NULL AND status IN ('open', 'pending', 'on_hold')
    UNION ALL
    SELECT tenant_id, 'queue', team_id, event_time,
        CASE WHEN next_team_at IS NULL THEN next_assigned_at
             WHEN next_assigned_at IS NULL THEN next_team_at
             ELSE least(next_assigned_at, next_team_at) END
    FROM flow
    WHERE event_type IN ('conversation.created', 'conversation.transferred') AND team_id IS NOT NULL
      AND (next_assigned_at IS NOT NULL OR next_team_at IS NOT NULL)
    UNION ALL
    SELECT tenant_id, 'assignment', 'assigned', started_at, ended_at
    FROM assignment_replies
),
measured AS (
    SELECT tenant_id, kind, step, date_trunc('day', ended_at) AS day,
        (CAST(ended_at AS BIGINT) - CAST(started_at AS BIGINT)) / 1e6 AS seconds
    FROM instances
),
daily AS (
    SELECT tenant_id, kind, step, day,
        count(*) AS instances,
        sum(seconds) AS total_s,
        avg(seconds) AS avg_s,
        percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50_s,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY seconds) AS p90_s
    FROM measured
    GROUP BY tenant_id, kind, step, day
),
baseline AS (
    SELECT d.tenant_id, d.kind, d.step, d.day,
        count(*) AS baseline_instances,
        percentile_cont(0.9) WITHIN GROUP (ORDER BY m.seconds) AS baseline_p90_s
    FROM daily d
    JOIN measured m
      ON m.tenant_id = d.tenant_id AND m.kind = d.kind AND m.step = d.step
     AND m.day < d.day AND m.day >= d.day - INTERVAL '28 days'
    GROUP BY d.tenant_id, d.kind, d.step, d.day
)
SELECT
    d.tenant_id,
    d.kind,
    d.step,
    d.day,
    d.instances,
    d.total_s,
    d.avg_s,
    d.p50_s,
    d.p90_s,
    coalesce(b.baseline_instances, 0) AS baseline_instances,
    b.baseline_p90_s,
    coalesce(b.baseline_instances >= 5 AND d.avg_s > b.baseline_p90_s, false) AS is_bottleneck
FROM daily d
LEFT JOIN baseline b ON b.tenant_id = d.tenant_id AND b.kind = d.kind AND b.step = d.step AND b.day = d.day
