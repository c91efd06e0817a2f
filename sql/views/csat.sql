-- csat — one row per conversation with a CSAT score (tenant_id, conversation_id).
--
-- SPEC §3 "CSAT": the latest csat.submitted score of a conversation counts
-- (earlier ones are superseded); CSAT % = share of conversations whose
-- counted score is ≥ 4, average score also reported:
--   SELECT avg(CASE WHEN satisfied THEN 1.0 ELSE 0.0 END) AS csat_pct,
--          avg(csat_score) AS avg_score FROM csat WHERE ...
-- Columns: csat_score (1–5), satisfied (score ≥ 4), submitted_at, comment
-- (the latest submission's body), submissions (how many were sent), and the
-- conversation's channel, team_id, assignee_id, priority for slicing;
-- day = UTC date of submitted_at.
--
-- Decisions where SPEC is silent: "latest" is by event_time, then event_id;
-- the conversation's current team and assignee are the ones rated.
CREATE VIEW csat AS
WITH scores AS (
    SELECT tenant_id, conversation_id,
        last_value(csat_score ORDER BY event_time, event_id) AS csat_score,
        last_value(body ORDER BY event_time, event_id) AS comment,
        max(event_time) AS submitted_at,
        count(*) AS submissions
    FROM events
    WHERE event_type = 'csat.submitted' AND conversation_id IS NOT NULL AND csat_score IS NOT NULL
    GROUP BY tenant_id, conversation_id
)
SELECT
    s.tenant_id,
    s.conversation_id,
    s.csat_score,
    s.csat_score >= 4 AS satisfied,
    s.submitted_at,
    date_trunc('day', s.submitted_at) AS day,
    s.comment,
    s.submissions,
    c.channel,
    c.team_id,
    c.assignee_id,
    c.priority
FROM scores s
LEFT JOIN conversations c ON c.tenant_id = s.tenant_id AND c.conversation_id = s.conversation_id
