//! What a tenant tells the durable inbox: events finished (done, or failed with the reason) and events set
//! aside, gathered while one message is handled and reported together at its end. Send marks (Meta accepted a
//! reply) are reported by the send task itself, as soon as Meta answers (`send`).

use super::TenantState;
use crate::ids::InboxId;

/// An inbox event is finished (done, or failed with the reason).
pub(super) fn finish(state: &mut TenantState, inbox_id: Option<InboxId>, failure: Option<String>) {
    if let Some(id) = inbox_id {
        state.progress.finished.push((id, failure));
    }
}

/// One reply of an inbox event reached its final outcome; the event is finished with its last one.
pub(super) fn settle(state: &mut TenantState, inbox_id: Option<InboxId>, failure: Option<String>) {
    let Some(id) = inbox_id else { return };
    let Some(entry) = state.outstanding.get_mut(&id) else { return };
    entry.0 = entry.0.saturating_sub(1);
    if failure.is_some() {
        entry.1 = failure;
    }
    if entry.0 == 0
        && let Some((_, failure)) = state.outstanding.remove(&id)
    {
        state.progress.finished.push((id, failure));
    }
}

/// Sends what was gathered during this message to the inbox, as a task.
pub(super) fn report(state: &mut TenantState) {
    if state.progress.is_empty() {
        return;
    }
    let batch = std::mem::take(&mut state.progress);
    let sink = state.ctx.ports.events.clone();
    state.ctx.spawn(async move { sink.progress(batch).await });
}
