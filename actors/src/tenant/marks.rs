//! What a tenant tells the durable inbox about its events: finished (done, or failed with the reason), or set
//! aside (left pending for a later hand-over). Gathered while the tenant handles one message and reported
//! together at its end. Send marks (Meta accepted a reply) are not here: the send task reports each as soon
//! as Meta answers (`send`).

use std::collections::HashMap;

use crate::domain::ids::InboxId;
use crate::engine::context::TenantContext;
use crate::ports::{Outcome, Progress};

/// An inbox event's replies still to reach their final outcome, and the last failure among them.
struct Outstanding {
    left: usize,
    failure: Option<String>,
    /// How the event was answered (kept as its outcome when done).
    note: Option<String>,
}

/// The inbox events this tenant holds and what it has to report about them.
#[derive(Default)]
pub(super) struct Marks {
    /// Events whose replies are queued or in flight: finished with their last reply.
    outstanding: HashMap<InboxId, Outstanding>,
    /// What to report at the end of the message being handled.
    progress: Progress,
}

impl Marks {
    /// `id` is finished now (done, or failed with the reason).
    pub(super) fn finish(&mut self, id: Option<InboxId>, failure: Option<String>) {
        if let Some(id) = id {
            self.progress.finished.push((id, Outcome::from_failure(failure)));
        }
    }

    /// `id` is done now, with a note on how it was answered.
    pub(super) fn finish_noted(&mut self, id: Option<InboxId>, note: Option<String>) {
        if let Some(id) = id {
            self.progress.finished.push((id, Outcome::Done(note)));
        }
    }

    /// `id` has `replies` replies to send (at least one): it is finished with the last of them (done with
    /// `note`, unless one failed).
    pub(super) fn expect(&mut self, id: InboxId, replies: usize, note: Option<String>) {
        self.outstanding.insert(id, Outstanding { left: replies, failure: None, note });
    }

    /// One reply of `id` reached its final outcome (`failure`: why it will never be sent); the event is
    /// finished with its last one, failed if any of them failed.
    pub(super) fn settle(&mut self, id: Option<InboxId>, failure: Option<String>) {
        let Some(id) = id else { return };
        let Some(entry) = self.outstanding.get_mut(&id) else { return };
        entry.left = entry.left.saturating_sub(1);
        if failure.is_some() {
            entry.failure = failure;
        }
        if entry.left == 0
            && let Some(done) = self.outstanding.remove(&id)
        {
            let outcome = match done.failure {
                Some(failure) => Outcome::Failed(failure),
                None => Outcome::Done(done.note),
            };
            self.progress.finished.push((id, outcome));
        }
    }

    /// `id` is set aside: it stays pending, and the inbox hands it over again later.
    pub(super) fn set_aside(&mut self, id: Option<InboxId>) {
        self.progress.released.extend(id);
    }

    /// Every event still waiting for replies, forgotten here (the Page was disconnected: they are finished
    /// by the caller).
    pub(super) fn take_outstanding(&mut self) -> Vec<InboxId> {
        self.outstanding.drain().map(|(id, _)| id).collect()
    }

    /// Sends what was gathered during this message to the inbox, as a task.
    pub(super) fn report(&mut self, ctx: &TenantContext) {
        if self.progress.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.progress);
        let sink = ctx.ports.events.clone();
        ctx.spawn(async move { sink.progress(batch).await });
    }
}
