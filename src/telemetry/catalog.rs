//! Every metric Switchboard exports, in one place: its name, type, unit, labels and what it means. At start-up
//! each is described (so `/metrics` carries its `# HELP` and `# TYPE`), and the series an alert needs exist from
//! the first scrape, zero where that is the truth, so an alert on a series that is absent can tell "healthy"
//! from "not exported". The README's metrics table is this list; a test holds the two and the dashboard to it.
//!
//! Label values come from fixed sets, or are a client's slug and a Page id (so the number of series is bounded
//! by the integrations); no label ever carries a token, a customer's id or a message.

use switchboard_actors::telemetry::metrics as engine;

use crate::adapters::ai;
use crate::adapters::reconcile::{PAGE_NEEDS_RECONNECTION, PAGE_STATUSES, PAGES};
use crate::cluster;
use crate::http;
use crate::inbox;
use crate::ownership;

/// What kind of series a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric: `labels` lists its label names (comma-separated, empty for none).
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static str,
    pub help: &'static str,
}

const fn counter(name: &'static str, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: Kind::Counter, labels, help }
}

const fn gauge(name: &'static str, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: Kind::Gauge, labels, help }
}

const fn histogram(name: &'static str, labels: &'static str, help: &'static str) -> Metric {
    Metric { name, kind: Kind::Histogram, labels, help }
}

/// From a webhook's arrival to Meta accepting the reply to its event.
pub const WEBHOOK_REPLY: &str = engine::WEBHOOK_REPLY;
/// 1 while the database answered this node's last check (every 5 s), else 0.
pub const DATABASE_UP: &str = "switchboard_database_up";
/// 1, with this process's node name and cluster mode as labels.
pub const NODE_INFO: &str = "switchboard_node_info";

/// Every metric, in the order of the README's table.
pub const ALL: &[Metric] = &[
    counter(engine::EVENTS, "client,page,kind", "Webhook events that reached their tenant, by kind."),
    counter(http::webhook::SIGNATURE_FAILURES, "", "Webhook POSTs refused for a missing or wrong X-Hub-Signature-256."),
    counter(
        inbox::UNHANDLED,
        "object,kind,reason",
        "Parts of signed webhook bodies not understood (acknowledged and kept).",
    ),
    counter(
        inbox::UNHANDLED_NOT_KEPT,
        "",
        "Parts not understood that could not be kept (their events were committed).",
    ),
    counter(
        engine::UNKNOWN_PAGE_EVENTS,
        "page",
        "Webhook events for an account no client owns (100 ids labelled, then other).",
    ),
    counter(engine::REPLIES_SENT, "client,page", "Replies Meta accepted."),
    histogram(engine::SEND_LATENCY, "client,page", "Send API call latency, from the call to Meta's answer."),
    histogram(WEBHOOK_REPLY, "client,page", "From a webhook's arrival to Meta accepting a reply to its event."),
    counter(
        engine::SEND_ERRORS,
        "client,page,code",
        "Send API calls Meta refused or that failed, by Meta's code (or http_NNN, transport).",
    ),
    counter(engine::REPLIES_DROPPED, "client,page,reason", "Replies given up, by reason."),
    counter(
        engine::EVENTS_IGNORED,
        "client,page,reason",
        "Events acknowledged and not answered on purpose, by reason.",
    ),
    counter(engine::THROTTLED_PAUSES, "client,page", "Times Meta's throttling paused a Page."),
    gauge(engine::QUEUE_DEPTH, "client,page", "Replies waiting or in flight for a Page."),
    gauge(engine::LAST_EVENT, "client,page", "Meta's timestamp of the last event that reached the Page's tenant."),
    counter(engine::ACTOR_RESTARTS, "client,page", "Tenant actors restarted after a failure."),
    gauge(engine::ACTIVE_ACTORS, "", "Tenant actors running on this node."),
    counter(
        engine::EVENTS_DROPPED,
        "page,reason",
        "Events acknowledged but not processed here (quarantined, start buffer full, not run here).",
    ),
    counter(engine::UNKNOWN_REPLIES, "outcome", "Replies of unknown outcome, by how they were settled."),
    counter(inbox::COMMIT_FAILURES, "", "Webhooks answered 503 because their events could not be committed in time."),
    histogram(
        inbox::WRITE_SECONDS,
        "writer",
        "Durable mode's group-commit writes, by writer (inbox, replies, marks, progress): how long each took.",
    ),
    counter(
        inbox::NOT_TAKEN,
        "reason",
        "Committed events handed to the engine that no tenant took (they stay pending).",
    ),
    counter(inbox::PROGRESS_RETRIES, "", "Writes of sent replies and finished events that had to be retried."),
    gauge(inbox::watchdog::OLDEST_PENDING, "", "Age of the oldest pending event among the Pages this node runs."),
    gauge(inbox::watchdog::PENDING, "", "Pending events among the Pages this node runs."),
    gauge(
        inbox::watchdog::CLUSTER_OLDEST_PENDING,
        "",
        "Age of the oldest pending event among all Pages, whichever node runs them.",
    ),
    gauge(
        inbox::watchdog::PAGE_OLDEST_PENDING,
        "client,page",
        "Age of a Page's oldest pending event (Pages this node runs).",
    ),
    gauge(
        inbox::watchdog::PAGE_STUCK,
        "client,page",
        "1 while a Page this node runs is stuck (see switchboard_stuck_pages for why).",
    ),
    gauge(inbox::watchdog::STUCK_PAGES, "reason", "Pages this node found stuck, by reason."),
    counter(inbox::watchdog::HEALS, "reason", "Stuck Pages healed, by reason."),
    counter(
        http::HTTP_REQUESTS,
        "route,status",
        "HTTP requests answered, by route and status class (2xx, 3xx, 4xx, 5xx).",
    ),
    gauge(http::server::OPEN_CONNECTIONS, "", "Open connections on the public listener."),
    counter(http::server::CONNECTIONS_REFUSED, "reason", "Connections refused at accept (an address at its cap)."),
    counter(http::server::REQUESTS_REFUSED, "reason", "Requests refused 429 (a forwarded client address at its cap)."),
    counter(http::server::CONNECTIONS_CLOSED, "reason", "Connections closed by a limit, by which."),
    gauge(DATABASE_UP, "", "1 while the database answered this node's last check (every 5 s), else 0."),
    gauge(PAGES, "status", "Pages connected to a client, per integration status, as the database says."),
    gauge(
        PAGE_NEEDS_RECONNECTION,
        "client,page",
        "1 for a Page whose token needs reconnecting or whose permission Meta refused.",
    ),
    gauge(NODE_INFO, "node,mode", "1, with this process's node name and cluster mode."),
    gauge(cluster::OWNED_PAGES, "", "Pages this node owns (cluster mode)."),
    gauge(cluster::LIVE_NODES, "", "Live cluster nodes, as this node's claim loop last saw them (cluster mode)."),
    counter(cluster::CLAIMS, "", "Pages this node claimed."),
    counter(cluster::RELEASES, "", "Pages this node released."),
    counter(cluster::RENEWALS, "", "Cluster lease renewals this node made."),
    counter(cluster::LEASES_LOST, "", "Times this node lost its cluster lease."),
    counter(crate::store::AUDIT_WRITE_FAILURES, "", "Audit rows that could not be written (the change was made)."),
    counter(
        ownership::WAKES_DROPPED,
        "",
        "Owner wake-ups dropped because their queue was full (the sweeper covers them).",
    ),
    counter(ai::CALLS, "client,page,outcome", "Model calls for AI answers, by outcome (answered, hand_over, failed)."),
    counter(ai::TOKENS, "client,page,kind", "Tokens AI answers used (kind reported by the server, or estimated)."),
    counter(ai::FAILURES, "client,page,kind", "Model calls that gave no usable answer, by kind."),
    counter(ai::FALLBACKS, "client,page,reason", "Customer texts the rules answered instead of the model, by reason."),
    histogram(ai::LATENCY, "client,page", "Model call latency for AI answers."),
    counter(ai::SETTLE_FAILURES, "client", "AI calls whose tokens could not be counted (storage kept failing)."),
];

/// Describes every metric, and makes the series alerts need exist with their true value so far (zero).
pub fn describe(node: &str, mode: &str) {
    for m in ALL {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
        if m.labels.is_empty() {
            match m.kind {
                Kind::Counter => metrics::counter!(m.name).increment(0),
                Kind::Gauge => metrics::gauge!(m.name).increment(0.0),
                Kind::Histogram => {}
            }
        }
    }
    for status in ["2xx", "3xx", "4xx", "5xx"] {
        metrics::counter!(http::HTTP_REQUESTS, "route" => "webhook", "status" => status).increment(0);
    }
    for reason in inbox::watchdog::Reason::ALL {
        metrics::gauge!(inbox::watchdog::STUCK_PAGES, "reason" => reason.label()).increment(0.0);
        metrics::counter!(inbox::watchdog::HEALS, "reason" => reason.label()).increment(0);
    }
    for status in PAGE_STATUSES {
        metrics::gauge!(PAGES, "status" => status).increment(0.0);
    }
    metrics::gauge!(NODE_INFO, "node" => node.to_owned(), "mode" => mode.to_owned()).set(1.0);
}
