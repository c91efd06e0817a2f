-- commerce_tickets — one row per (conversation, linked order)
-- (tenant_id, conversation_id, order_id).
--
-- SPEC §3 "Commerce tickets": conversations that carry an order_id, or whose
-- customer (by stitched identity, journey_map()) has an order within ±7 days;
-- per store. link says which:
--   'conversation'  an event of the conversation carries the order_id
--   'customer'      an order event (order.created/.updated/.refunded) of the
--                   same person within 7 days before or after the
--                   conversation's created_at (and not already linked)
-- Columns: store (the order events' store, else the conversation's),
-- order_at (the order's first event), order_total, currency, refunded, and
-- the conversation's channel, status, created_at, resolved_at.
-- Per store: SELECT store, count(DISTINCT conversation_id) FROM commerce_tickets GROUP BY store.
--
-- Decisions where SPEC is silent: any order event in the window links
-- (a refund days before contacting support is the reason for the ticket);
-- an order_id named by a conversation but never seen as an order event
-- still links, with store from the conversation's events.
CREATE VIEW commerce_tickets AS
WITH map AS (
    SELECT * FROM journey_map()
),
order_events AS (
    SELECT e.tenant_id, e.order_id, e.event_time, e.event_id, e.event_type, e.store, e.order_total, e.currency,
        m.person_id
    FROM events e
    LEFT JOIN map m ON m.tenant_id = e.tenant_id AND m.event_id = e.event_id
    WHERE e.event_type LIKE 'order.%' AND e.order_id IS NOT NULL
),
orders AS (
    SELECT tenant_id, order_id,
        min(event_time) AS order_at,
        first_value(store ORDER BY event_time, event_id) FILTER (WHERE store IS NOT NULL) AS store,
        last_value(order_total ORDER BY event_time, event_id) FILTER (WHERE order_total IS NOT NULL)
            AS order_total,
        last_value(currency ORDER BY event_time, event_id) FILTER (WHERE currency IS NOT NULL) AS currency,
        count(*) FILTER (WHERE event_type = 'order.refunded') > 0 AS refunded
    FROM order_events
    GROUP BY tenant_id, order_id
),
carried AS (
    SELECT tenant_id, conversation_id, order_id,
        first_value(store ORDER BY event_time, event_id) FILTER (WHERE store IS NOT NULL) AS store
    FROM events
    WHERE conversation_id IS NOT NULL AND order_id IS NOT NULL AND event_type NOT LIKE 'custom.%'
    GROUP BY tenant_id, conversation_id, order_id
),
conversation_person AS (
    SELECT tenant_id, conversation_id, min(person_id) AS person_id
    FROM map
    WHERE conversation_id IS NOT NULL
    GROUP BY tenant_id, conversation_id
),
nearby AS (
    SELECT DISTINCT p.tenant_id, p.conversation_id, o.order_id
    FROM conversation_person p
    JOIN conversations c ON c.tenant_id = p.tenant_id AND c.conversation_id = p.conversation_id
    JOIN order_events o ON o.tenant_id = p.tenant_id AND o.person_id = p.person_id
    WHERE o.event_time >= c.created_at - INTERVAL '7 days'
      AND o.event_time <= c.created_at + INTERVAL '7 days'
),
links AS (
    SELECT tenant_id, conversation_id, order_id, 'conversation' AS link, store FROM carried
    UNION ALL
    SELECT n.tenant_id, n.conversation_id, n.order_id, 'customer', CAST(NULL AS VARCHAR)
    FROM nearby n
    LEFT JOIN carried k
      ON k.tenant_id = n.tenant_id AND k.conversation_id = n.conversation_id AND k.order_id = n.order_id
    WHERE k.order_id IS NULL
)
SELECT
    l.tenant_id,
    l.conversation_id,
    l.order_id,
    coalesce(o.store, l.store) AS store,
    l.link,
    o.order_at,
    o.order_total,
    o.currency,
    o.refunded,
    c.channel,
    c.status,
    c.created_at,
    c.resolved_at
FROM links l
JOIN conversations c ON c.tenant_id = l.tenant_id AND c.conversation_id = l.conversation_id
LEFT JOIN orders o ON o.tenant_id = l.tenant_id AND o.order_id = l.order_id
