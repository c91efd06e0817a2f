//! Conversions between the protobuf API and the model.

use cxdb_model::{Event, EventError};
use cxdb_proto::v1;
use cxdb_storage::WriteOutcome;

/// The row a prost-decoded event stands for: the reference the columnar
/// decoder of `Write` (`grpc::columns`) is tested against.
#[cfg(test)]
pub(crate) fn event_from_proto(e: v1::Event) -> Event {
    Event {
        tenant_id: e.tenant_id,
        event_id: e.event_id,
        event_time: e.event_time_us,
        ingested_at: 0,
        event_type: e.event_type,
        channel: e.channel,
        conversation_id: e.conversation_id,
        ticket_id: e.ticket_id,
        customer_id: e.customer_id,
        customer_email: e.customer_email,
        customer_phone: e.customer_phone,
        actor_type: e.actor_type,
        agent_id: e.agent_id,
        team_id: e.team_id,
        status: e.status,
        priority: e.priority,
        message_id: e.message_id,
        body: e.body,
        is_public: e.is_public,
        csat_score: e.csat_score,
        bot_id: e.bot_id,
        intent: e.intent,
        confidence: e.confidence,
        workflow_id: e.workflow_id,
        store: e.store,
        order_id: e.order_id,
        order_total: e.order_total,
        currency: e.currency,
        duration_ms: e.duration_ms,
        tags: (e.has_tags || !e.tags.is_empty()).then_some(e.tags),
        attributes: e.attributes,
    }
}

pub fn event_to_proto(e: &Event) -> v1::Event {
    v1::Event {
        tenant_id: e.tenant_id.clone(),
        event_id: e.event_id.clone(),
        event_time_us: e.event_time,
        event_type: e.event_type.clone(),
        channel: e.channel.clone(),
        conversation_id: e.conversation_id.clone(),
        ticket_id: e.ticket_id.clone(),
        customer_id: e.customer_id.clone(),
        customer_email: e.customer_email.clone(),
        customer_phone: e.customer_phone.clone(),
        actor_type: e.actor_type.clone(),
        agent_id: e.agent_id.clone(),
        team_id: e.team_id.clone(),
        status: e.status.clone(),
        priority: e.priority.clone(),
        message_id: e.message_id.clone(),
        body: e.body.clone(),
        is_public: e.is_public,
        csat_score: e.csat_score,
        bot_id: e.bot_id.clone(),
        intent: e.intent.clone(),
        confidence: e.confidence,
        workflow_id: e.workflow_id.clone(),
        store: e.store.clone(),
        order_id: e.order_id.clone(),
        order_total: e.order_total,
        currency: e.currency.clone(),
        duration_ms: e.duration_ms,
        tags: e.tags.clone().unwrap_or_default(),
        has_tags: e.tags.is_some(),
        attributes: e.attributes.clone(),
    }
}

pub(crate) fn event_error_to_proto(e: &EventError, offset: usize) -> v1::EventError {
    v1::EventError {
        index: (e.index + offset) as u32,
        event_id: e.event_id.clone().unwrap_or_default(),
        field: e.field.clone(),
        error: e.message.clone(),
    }
}

/// Adds one write's outcome to a response; `offset` shifts the indexes
/// (for the later messages of a stream).
pub(crate) fn add_outcome(resp: &mut v1::WriteResponse, out: &WriteOutcome, offset: usize) {
    resp.accepted += out.accepted as u64;
    resp.duplicate += out.duplicates.len() as u64;
    resp.duplicate_indexes
        .extend(out.duplicates.iter().map(|i| (i + offset) as u32));
    resp.rejected
        .extend(out.rejected.iter().map(|e| event_error_to_proto(e, offset)));
}
