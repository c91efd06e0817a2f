//! Store orders (Shopify, WooCommerce): created, shipped, delivered,
//! sometimes cancelled and refunded, some synced by the `order-sync`
//! workflow — and a share of them lead to a support conversation.

use cxdb_model::Event;
use rand::Rng;
use rand::rngs::StdRng;

use crate::automation;
use crate::customers::{self, Identity};
use crate::phrases::{DELIVERY, REFUND};
use crate::random::{DAY, HOUR, MINUTE, lognormal, lognormal_f64, weighted};

/// Share of orders that lead to a conversation (delivery or refund).
pub(crate) const CONVERSATION_SHARE: f64 = 0.25;

/// An order a conversation can be about.
#[derive(Debug, Clone)]
pub(crate) struct Order {
    pub(crate) id: String,
    pub(crate) store: &'static str,
    pub(crate) total: f64,
    pub(crate) currency: &'static str,
}

/// A conversation an order causes: when, about what, by whom.
#[derive(Debug, Clone)]
pub(crate) struct OrderTicket {
    pub(crate) at: i64,
    pub(crate) topic: usize,
    pub(crate) customer: u64,
    pub(crate) order: Order,
}

/// Simulates order `key` placed at `t`; returns the conversation it leads
/// to, if any.
pub(crate) fn simulate_order(
    rng: &mut StdRng,
    tenant: &str,
    key: &str,
    t: i64,
    out: &mut Vec<Event>,
) -> Option<OrderTicket> {
    let customer = customers::draw(rng);
    let store = if rng.random_bool(0.65) {
        "shopify"
    } else {
        "woocommerce"
    };
    let currency = ["USD", "EUR", "GBP"][weighted(rng, &[55, 30, 15])];
    let total = (lognormal_f64(rng, 60.0, 0.8).clamp(2.0, 2_000.0) * 100.0).round() / 100.0;
    let order = Order {
        id: format!("{}-{key}", if store == "shopify" { "SH" } else { "WC" }),
        store,
        total,
        currency,
    };
    let who = Identity {
        customer_id: None,
        email: Some(customers::email(customer)),
        phone: rng.random_bool(0.6).then(|| customers::phone(customer)),
    };
    let mut k = 0;
    let mut emit = |at: i64, event_type: &str, attributes: Option<String>| -> Event {
        k += 1;
        Event {
            tenant_id: tenant.to_string(),
            event_id: format!("{tenant}-o{key}-{k}"),
            event_time: at,
            event_type: event_type.into(),
            actor_type: Some("system".into()),
            customer_email: who.email.clone(),
            customer_phone: who.phone.clone(),
            store: Some(store.into()),
            order_id: Some(order.id.clone()),
            order_total: Some(total),
            currency: Some(currency.into()),
            attributes,
            ..Default::default()
        }
    };
    let status = |s: &str| Some(format!(r#"{{"fulfillment_status":"{s}"}}"#));
    out.push(emit(
        t,
        "order.created",
        Some(r#"{"financial_status":"paid"}"#.into()),
    ));
    if rng.random_bool(0.3) {
        let template = Event {
            tenant_id: tenant.to_string(),
            store: Some(store.into()),
            order_id: Some(order.id.clone()),
            ..Default::default()
        };
        let at = t + rng.random_range(200..3_000) * 1_000;
        let ids = [0, 1].map(|i| format!("{tenant}-o{key}-sync{i}"));
        out.extend(automation::run(
            rng,
            &template,
            "order-sync",
            at,
            150..4_000,
            0.08,
            ids,
        ));
    }
    if rng.random_bool(0.03) {
        let at = t + lognormal(rng, 2 * HOUR, 1.0, 2 * DAY);
        out.push(emit(at, "order.updated", status("cancelled")));
        out.push(emit(at + 5 * MINUTE, "order.refunded", None));
        return None;
    }
    let shipped = t + lognormal(rng, 20 * HOUR, 0.6, 4 * DAY);
    let delivered = shipped + lognormal(rng, 3 * DAY, 0.4, 9 * DAY);
    out.push(emit(shipped, "order.updated", status("shipped")));
    out.push(emit(delivered, "order.updated", status("delivered")));
    if !rng.random_bool(CONVERSATION_SHARE) {
        return None;
    }
    let at = t + lognormal(rng, 2 * DAY, 0.6, 7 * DAY);
    let topic = if at < delivered || rng.random_bool(0.3) {
        DELIVERY
    } else {
        REFUND
    };
    Some(OrderTicket {
        at,
        topic,
        customer,
        order,
    })
}
