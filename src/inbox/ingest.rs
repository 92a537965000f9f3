//! Ingest: what happens to a verified, parsed webhook body before Meta gets its 200.
//!
//! Events are handed over in timestamp order. With the durable inbox, the events some tenant owns are
//! committed first (receipts only if `inbox.receipts = "durable"`), a redelivery is recognised by its stored
//! key and only counted, and the parts Switchboard does not understand are kept for an operator; then each
//! committed event goes to its tenant. Without it, events go straight to their tenants. An account the
//! engine's directory does not know is looked up in the store first (a Page connected on another node a
//! moment ago); a store that cannot answer, or a commit that fails, is [`Unavailable`]: the webhook answers
//! 503 and Meta delivers again, so nothing acknowledged is dropped.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex};

use switchboard_actors::telemetry::metrics::EVENTS_IGNORED;
use switchboard_actors::{InboundEvent, PageId, Route, Router};

use super::Inbox;
use crate::adapters::Directory;
use crate::meta::webhook::{Parsed, Reason, Unhandled};

/// Parts of signed bodies Switchboard does not understand, by object, kind and reason (all from fixed sets).
pub const UNHANDLED: &str = "switchboard_webhook_unhandled_total";
/// Parts not understood that could not be kept (the events of their body were committed and acknowledged).
pub const UNHANDLED_NOT_KEPT: &str = "switchboard_webhook_unhandled_not_kept_total";

/// A body's events could not be stored (or their tenant looked up): answer 503, Meta delivers again.
#[derive(Debug, thiserror::Error)]
#[error("the webhook's events cannot be stored now")]
pub struct Unavailable;

/// Where verified webhook bodies go. Cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    router: Router,
    directory: Directory,
    durable: Option<Durable>,
}

#[derive(Clone)]
struct Durable {
    inbox: Inbox,
    /// Commit read and delivery receipts too.
    receipts: bool,
}

impl Ingest {
    /// Events go to their tenants as they come (`inbox.mode = "memory"`).
    pub fn in_memory(router: Router, directory: Directory) -> Self {
        Self { router, directory, durable: None }
    }

    /// Events are committed to `inbox` before the 200 (`inbox.mode = "durable"`).
    pub fn durable(inbox: Inbox, router: Router, directory: Directory, receipts: bool) -> Self {
        Self { router, directory, durable: Some(Durable { inbox, receipts }) }
    }

    /// Takes a verified body's events and parts not understood; `Ok` once Meta may have its 200.
    pub async fn ingest(&self, parsed: Parsed) -> Result<(), Unavailable> {
        let Parsed { mut events, unhandled } = parsed;
        for part in &unhandled {
            note(part);
        }
        // Meta does not promise order within a body after redeliveries: hand events over in timestamp order
        // (stable, so equal timestamps keep Meta's order).
        events.sort_by_key(|e| e.timestamp);
        let arrived = tokio::time::Instant::now();
        for event in &mut events {
            event.received = Some(arrived);
        }
        match &self.durable {
            Some(durable) => self.commit_then_dispatch(durable, events, &unhandled).await,
            None => {
                for event in events {
                    // A Page connected elsewhere a moment ago is learned from the store before its event is
                    // unknown.
                    self.route(&event).await?;
                    self.router.dispatch(event);
                }
                Ok(())
            }
        }
    }

    async fn commit_then_dispatch(
        &self,
        durable: &Durable,
        events: Vec<InboundEvent>,
        unhandled: &[Unhandled],
    ) -> Result<(), Unavailable> {
        let Durable { inbox, receipts } = durable;
        // Only events some tenant owns are stored (receipts only if configured); the rest are acknowledged and
        // handed over (or counted by the router) once the commit succeeded.
        let mut owned: Vec<(Route, InboundEvent)> = Vec::with_capacity(events.len());
        let mut unowned = Vec::new();
        for event in events {
            let keep = *receipts || !event.is_receipt();
            let route = if keep { self.route(&event).await? } else { None };
            match route {
                Some(route) => owned.push((route, event)),
                None => unowned.push(event),
            }
        }
        let refs: Vec<(&InboundEvent, &PageId)> = owned.iter().map(|(r, e)| (e, &r.page)).collect();
        let ids = if unhandled.is_empty() {
            inbox.commit(&refs).await
        } else {
            let (ids, kept) = tokio::join!(inbox.commit(&refs), inbox.keep_unhandled(unhandled));
            if kept.is_err() {
                // The events are what Meta's 200 promises; the copy of what was not understood is for an
                // operator. Answering 503 for it would have Meta redeliver the whole body, again and again if
                // the part can never be kept.
                metrics::counter!(UNHANDLED_NOT_KEPT).increment(unhandled.len() as u64);
            }
            ids
        };
        let ids = ids.map_err(|_| Unavailable)?;
        for ((route, event), id) in owned.into_iter().zip(ids) {
            match id {
                // Stored already done (it needs no reply): the tenant only counts it.
                Some(_) if !self.router.needs_tenant(&event) => {
                    self.router.dispatch(event);
                }
                Some(id) => inbox.dispatch(event, id, route.page),
                // Already stored: a redelivery, which was (or is being) handled.
                None => metrics::counter!(EVENTS_IGNORED, "client" => route.client_slug.to_string(),
                    "page" => route.page.to_string(), "reason" => "duplicate")
                .increment(1),
            }
        }
        for event in unowned {
            self.router.dispatch(event);
        }
        Ok(())
    }

    /// The tenant `event` belongs to, asking the store about an account the engine does not know.
    async fn route(&self, event: &InboundEvent) -> Result<Option<Route>, Unavailable> {
        self.directory.route(event.account_id.as_str()).await.map_err(|_| Unavailable)
    }
}

/// Counts a part Switchboard does not understand, and logs it: the first of each (object, kind, reason) at
/// warn, the rest at debug (a new kind of event at Meta's rate must not flood the log). The log names where it
/// was and what is wrong, never a value from the body.
fn note(part: &Unhandled) {
    /// (object, kind, reason): a small fixed set.
    type Seen = HashSet<(&'static str, &'static str, Reason)>;
    static SEEN: LazyLock<Mutex<Seen>> = LazyLock::new(Mutex::default);
    metrics::counter!(UNHANDLED, "object" => part.object, "kind" => part.kind, "reason" => part.reason.label())
        .increment(1);
    let first = SEEN.lock().map(|mut seen| seen.insert((part.object, part.kind, part.reason))).unwrap_or(false);
    let account = part.account.as_deref().unwrap_or("-");
    if first {
        tracing::warn!(object = part.object, kind = part.kind, reason = part.reason.label(), %account,
            detail = %part.detail, "webhook part not understood; acknowledged and kept (further ones at debug)");
    } else {
        tracing::debug!(object = part.object, kind = part.kind, reason = part.reason.label(), %account,
            detail = %part.detail, "webhook part not understood; acknowledged and kept");
    }
}
