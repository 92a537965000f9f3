//! Metric names and the per-tenant handles. Per-tenant series carry `client` (slug) and `page` labels,
//! so their number is bounded by the number of integrations; no label ever carries a token or a user id.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};

use crate::telemetry::stats::TenantStats;

pub const EVENTS: &str = "switchboard_webhook_events_total";
pub const REPLIES_SENT: &str = "switchboard_replies_sent_total";
pub const REPLIES_DROPPED: &str = "switchboard_replies_dropped_total";
pub const SEND_ERRORS: &str = "switchboard_send_errors_total";
pub const THROTTLED_PAUSES: &str = "switchboard_throttled_pauses_total";
pub const QUEUE_DEPTH: &str = "switchboard_send_queue_depth";
pub const SEND_LATENCY: &str = "switchboard_send_latency_seconds";
pub const ACTOR_RESTARTS: &str = "switchboard_actor_restarts_total";
pub const LAST_EVENT: &str = "switchboard_last_event_timestamp_seconds";
pub const EVENTS_IGNORED: &str = "switchboard_events_ignored_total";
pub const ACTIVE_ACTORS: &str = "switchboard_active_actors";
pub const UNKNOWN_PAGE_EVENTS: &str = "switchboard_unknown_page_events_total";
/// Events the router could not hand to a tenant (quarantined, or its start buffer full).
pub const EVENTS_DROPPED: &str = "switchboard_events_dropped_total";
/// Replies of unknown outcome, by how they were settled (`delivered`, `resent`, `unreadable`).
pub const UNKNOWN_REPLIES: &str = "switchboard_unknown_replies_total";
/// From a webhook's arrival to Meta accepting a reply to its event.
pub const WEBHOOK_REPLY: &str = "switchboard_webhook_reply_seconds";

const KINDS: [&str; 7] = ["message", "echo", "postback", "read", "delivery", "reaction", "other"];

/// A tenant's metrics: nothing is recorded until the tenant has loaded its integration (its client's slug
/// names the series), and from then on every call only increments handles registered once, so the per-event
/// path never looks a series up. The tenant's figures for the portal move with them.
#[derive(Default)]
pub struct TenantMetrics {
    handles: Option<Handles>,
}

struct Handles {
    stats: Arc<TenantStats>,
    client: String,
    page: String,
    events: [Counter; 7],
    replies: Counter,
    throttled: Counter,
    queue_depth: Gauge,
    latency: Histogram,
    webhook_reply: Histogram,
    last_event: Gauge,
}

impl TenantMetrics {
    /// Starts recording, for `client`'s `page` (a reload keeps the handles it has).
    pub fn load(&mut self, client: &str, page: &str, stats: Arc<TenantStats>) {
        if self.handles.is_none() {
            self.handles = Some(Handles::new(client, page, stats));
        }
    }

    /// An event of `kind` (Meta's `timestamp` in seconds) reached the tenant at `received_ms`.
    pub fn event(&self, kind: &'static str, at_unix_secs: f64, received_ms: i64) {
        let Some(h) = &self.handles else { return };
        let i = KINDS.iter().position(|k| *k == kind).unwrap_or(KINDS.len() - 1);
        h.events[i].increment(1);
        h.last_event.set(at_unix_secs);
        h.stats.event(received_ms);
    }

    /// An event the bot does not answer, and why.
    pub fn ignored(&self, reason: &'static str) {
        let Some(h) = &self.handles else { return };
        counter!(EVENTS_IGNORED, "client" => h.client.clone(), "page" => h.page.clone(), "reason" => reason)
            .increment(1);
    }

    /// Meta accepted a reply after `latency`; `since_webhook`: how long after its event's webhook arrived
    /// (unknown for an event handed over again from the inbox).
    pub fn sent(&self, latency: std::time::Duration, since_webhook: Option<std::time::Duration>) {
        let Some(h) = &self.handles else { return };
        h.replies.increment(1);
        h.latency.record(latency.as_secs_f64());
        if let Some(d) = since_webhook {
            h.webhook_reply.record(d.as_secs_f64());
            h.stats.reply_latency(d);
        }
        h.stats.replied();
    }

    /// Meta refused a call with `code`.
    pub fn send_error(&self, code: String) {
        let Some(h) = &self.handles else { return };
        counter!(SEND_ERRORS, "client" => h.client.clone(), "page" => h.page.clone(), "code" => code).increment(1);
        h.stats.send_error();
    }

    /// `n` replies will never be sent, and why.
    pub fn dropped(&self, reason: &'static str, n: u64) {
        let Some(h) = &self.handles else { return };
        counter!(REPLIES_DROPPED, "client" => h.client.clone(), "page" => h.page.clone(), "reason" => reason)
            .increment(n);
    }

    /// Meta's throttling paused the Page.
    pub fn throttled(&self) {
        let Some(h) = &self.handles else { return };
        h.throttled.increment(1);
        h.stats.throttled();
    }

    /// Replies queued or in flight.
    pub fn queue_depth(&self, depth: usize) {
        let Some(h) = &self.handles else { return };
        h.queue_depth.set(depth as f64);
        h.stats.queue_depth(depth);
    }
}

impl Handles {
    fn new(client: &str, page: &str, stats: Arc<TenantStats>) -> Self {
        let (c, p) = (client.to_owned(), page.to_owned());
        Self {
            stats,
            events: KINDS.map(|kind| counter!(EVENTS, "client" => c.clone(), "page" => p.clone(), "kind" => kind)),
            replies: counter!(REPLIES_SENT, "client" => c.clone(), "page" => p.clone()),
            throttled: counter!(THROTTLED_PAUSES, "client" => c.clone(), "page" => p.clone()),
            queue_depth: gauge!(QUEUE_DEPTH, "client" => c.clone(), "page" => p.clone()),
            latency: histogram!(SEND_LATENCY, "client" => c.clone(), "page" => p.clone()),
            webhook_reply: histogram!(WEBHOOK_REPLY, "client" => c.clone(), "page" => p.clone()),
            last_event: gauge!(LAST_EVENT, "client" => c.clone(), "page" => p.clone()),
            client: c,
            page: p,
        }
    }
}
