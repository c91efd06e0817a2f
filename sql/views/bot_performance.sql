-- bot_performance — one row per bot per UTC day of session start
-- (tenant_id, bot_id, day).
--
-- SPEC §3 "Bot containment" rates over the bot_sessions view:
--   sessions, contained, handed_off, resolved, dropped_off   session counts
--   replies, fallbacks                                        event counts
--   containment_rate    contained / sessions
--   fallback_rate       fallbacks / (replies + fallbacks)
--   handoff_rate        sessions with a handoff / sessions
--   drop_off_rate       dropped_off / sessions (evaluated at query time)
--   response_accuracy   1 − fallback_rate
-- Rates are NULL when their denominator is 0. For other periods recompute
-- the rates from summed counts (or from bot_sessions).
CREATE VIEW bot_performance AS
WITH daily AS (
    SELECT tenant_id, bot_id, date_trunc('day', started_at) AS day,
        count(*) AS sessions,
        count(*) FILTER (WHERE contained) AS contained,
        count(*) FILTER (WHERE handed_off) AS handed_off,
        count(*) FILTER (WHERE resolved) AS resolved,
        count(*) FILTER (WHERE dropped_off) AS dropped_off,
        sum(replies) AS replies,
        sum(fallbacks) AS fallbacks
    FROM bot_sessions
    GROUP BY tenant_id, bot_id, date_trunc('day', started_at)
)
SELECT
    tenant_id,
    bot_id,
    day,
    sessions,
    contained,
    handed_off,
    resolved,
    dropped_off,
    replies,
    fallbacks,
    CAST(contained AS DOUBLE) / nullif(sessions, 0) AS containment_rate,
    CAST(fallbacks AS DOUBLE) / nullif(replies + fallbacks, 0) AS fallback_rate,
    CAST(handed_off AS DOUBLE) / nullif(sessions, 0) AS handoff_rate,
    CAST(dropped_off AS DOUBLE) / nullif(sessions, 0) AS drop_off_rate,
    1 - CAST(fallbacks AS DOUBLE) / nullif(replies + fallbacks, 0) AS response_accuracy
FROM daily
