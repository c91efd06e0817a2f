-- journey_steps — one row per step of a customer journey (tenant_id,
-- journey_id, step): each conversation and each order of the person.
--
-- SPEC §3 "Journey": identities (customer_id, lower-cased email, phone) that
-- share any value are one person (transitive); a journey is that person's
-- events across all conversations and channels, split where the gap between
-- events exceeds 24 h. Stitching is the table function journey_map()
-- (union-find in Rust, one pass over the identity columns: transitive
-- closure is not practical in SQL — see crates/cxdb-query/src/functions/journey.rs);
-- the events of one conversation share its person.
--   kind            'conversation' or 'order' (all order.* events of one order_id)
--   started_at, ended_at   conversation: created_at and its last event;
--                   order: its first and last order event
--   journey_id      person_id || '#' || n: a person's steps in start order; a
--                   step starting more than 24 h after every earlier step ended
--                   starts journey n + 1
--   step            1, 2, … within the journey
--   channel, status, first_response_s, resolved_at, resolution_s, handoffs,
--   csat_score      from conversations (NULL for orders)
--   duration_s      time in the step: to resolved_at, or to the last event
--                   while unresolved (orders: first to last event)
--   store, order_id, order_total, currency, refunded   orders only
--
-- Decisions where SPEC is silent: steps are conversations and orders (a
-- conversation is not cut by a gap inside it); the 24 h gap is the
-- constant 86400000000 µs below — a custom view can copy this file with
-- another gap.
CREATE VIEW journey_steps AS
WITH map AS (
    SELECT * FROM journey_map()
),
conversation_person AS (
    SELECT tenant_id, conversation_id, min(person_id) AS person_id
    FROM map
    WHERE conversation_id IS NOT NULL
    GROUP BY tenant_id, conversation_id
),
orders AS (
    SELECT e.tenant_id, e.order_id, min(m.person_id) AS person_id,
        min(e.event_time) AS started_at, max(e.event_time) AS ended_at,
        first_value(e.store ORDER BY e.event_time, e.event_id) FILTER (WHERE e.store IS NOT NULL) AS store,
        last_value(e.order_total ORDER BY e.event_time, e.event_id) FILTER (WHERE e.order_total IS NOT NULL)
            AS order_total,
        last_value(e.currency ORDER BY e.event_time, e.event_id) FILTER (WHERE e.currency IS NOT NULL)
            AS currency,
        count(*) FILTER (WHERE e.event_type = 'order.refunded') > 0 AS refunded
    FROM events e
    JOIN map m ON m.tenant_id = e.tenant_id AND m.event_id = e.event_id
    WHERE e.event_type LIKE 'order.%' AND e.order_id IS NOT NULL
    GROUP BY e.tenant_id, e.order_id
),
steps AS (
    SELECT p.tenant_id, p.person_id, 'conversation' AS kind, c.conversation_id,
        CAST(NULL AS VARCHAR) AS order_id,
        c.created_at AS started_at, c.last_event_at AS ended_at,
        c.channel, c.status, c.first_response_s, c.resolved_at, c.resolution_s, c.handoffs, c.csat_score,
        (CAST(coalesce(c.resolved_at, c.last_event_at) AS BIGINT) - CAST(c.created_at AS BIGINT)) / 1e6
            AS duration_s,
        CAST(NULL AS VARCHAR) AS store, CAST(NULL AS DOUBLE) AS order_total,
        CAST(NULL AS VARCHAR) AS currency, CAST(NULL AS BOOLEAN) AS refunded
    FROM conversation_person p
    JOIN conversations c ON c.tenant_id = p.tenant_id AND c.conversation_id = p.conversation_id
    UNION ALL
    SELECT tenant_id, person_id, 'order', CAST(NULL AS VARCHAR), order_id, started_at, ended_at,
        CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR), CAST(NULL AS DOUBLE), arrow_cast(NULL, 'Timestamp(Microsecond, Some("UTC"))'),
        CAST(NULL AS DOUBLE), CAST(NULL AS BIGINT), CAST(NULL AS INT),
        (CAST(ended_at AS BIGINT) - CAST(started_at AS BIGINT)) / 1e6,
        store, order_total, currency, refunded
    FROM orders
),
gaps AS (
    SELECT *,
        max(ended_at) OVER (PARTITION BY tenant_id, person_id
                            ORDER BY started_at, kind, conversation_id, order_id
                            ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS previous_end
    FROM steps
),
numbered AS (
    SELECT *,
        sum(CASE WHEN previous_end IS NULL
                   OR CAST(started_at AS BIGINT) - CAST(previous_end AS BIGINT) > 86400000000
                 THEN 1 ELSE 0 END)
            OVER (PARTITION BY tenant_id, person_id ORDER BY started_at, kind, conversation_id, order_id
                  ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS journey_number
    FROM gaps
)
SELECT
    tenant_id,
    person_id,
    person_id || '#' || CAST(journey_number AS VARCHAR) AS journey_id,
    row_number() OVER (PARTITION BY tenant_id, person_id, journey_number
                       ORDER BY started_at, kind, conversation_id, order_id) AS step,
    kind,
    conversation_id,
    order_id,
    started_at,
    ended_at,
    channel,
    status,
    first_response_s,
    resolved_at,
    resolution_s,
    handoffs,
    csat_score,
    duration_s,
    store,
    order_total,
    currency,
    refunded
FROM numbered
