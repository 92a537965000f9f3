//! `/api/facebook-webhook`: where Meta's traffic for every tenant enters.
//!
//! GET is the verification handshake. POST is verified (signature over the raw bytes), parsed entry by entry
//! and event by event, routed to the tenants' actors, and answered at once: the answer never waits on the
//! Graph API or any bot. Only a body that is too large, unsigned or wrongly signed, or not JSON is refused;
//! a signed body comes from Meta, and whatever in it Switchboard does not understand is acknowledged with the
//! rest, counted by kind, and (in durable mode) kept raw for an operator.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex};

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq as _;
use switchboard_actors::metrics::EVENTS_IGNORED;
use switchboard_actors::{InboundEvent, PageId, Route, Router};
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::{Body, BodyBudget, limited};
use super::error::ApiError;
use super::server::ClientAddr;
use crate::meta::webhook::{Parsed, Reason, Unhandled, WebhookSecrets, parse};

pub const SIGNATURE_FAILURES: &str = "switchboard_webhook_signature_failures_total";
/// Parts of signed bodies Switchboard does not understand, by object, kind and reason (all from fixed sets).
pub const UNHANDLED: &str = "switchboard_webhook_unhandled_total";
/// Parts not understood that could not be kept (the events of their body were committed and acknowledged).
pub const UNHANDLED_NOT_KEPT: &str = "switchboard_webhook_unhandled_not_kept_total";

/// What the webhook routes need.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: Arc<WebhookSecrets>,
    pub verify_token: Arc<SecretString>,
    pub router: Router,
    /// Accounts the engine's directory does not know are looked up in the store before they are unknown.
    pub directory: crate::engine::Directory,
    pub max_body_bytes: u64,
    /// Set in durable mode: events are committed before the 200.
    pub inbox: Option<crate::inbox::Inbox>,
    /// In durable mode, commit read and delivery receipts too.
    pub durable_receipts: bool,
}

pub fn routes(
    state: WebhookState,
    bodies: Arc<BodyBudget>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let max_body = state.max_body_bytes;
    let with_state = warp::any().map(move || state.clone());
    // Path before method, so an unknown path is a 404, not a 405.
    let verify = warp::path!("api" / "facebook-webhook")
        .and(warp::get())
        .and(warp::query::<HashMap<String, String>>())
        .and(with_state.clone())
        .and_then(|query: HashMap<String, String>, state: WebhookState| async move { verify(&query, &state) });
    let receive = warp::path!("api" / "facebook-webhook")
        .and(warp::post())
        // Just the signature header (a refcounted clone of its bytes), not a copy of the whole header map.
        .and(warp::header::value("x-hub-signature-256").map(Some).or(warp::any().map(|| None)).unify())
        .and(warp::ext::optional::<ClientAddr>())
        .and(limited(max_body, bodies.clone()))
        .and(with_state)
        .and_then(
            move |signature: Option<HeaderValue>, client: Option<ClientAddr>, body: Body, state: WebhookState| {
                let bodies = bodies.clone();
                async move {
                    let sender = client.map(|c| (c, bodies.as_ref()));
                    receive(signature.as_ref(), sender, &body, &state).await
                }
            },
        );
    // POST first: Meta's traffic never pays for `or` cloning the other branch (boxed, so that is cheap too).
    receive.or(verify.boxed()).unify()
}

/// `hub.mode=subscribe` and the right `hub.verify_token` → 200 with `hub.challenge` byte for byte.
fn verify(query: &HashMap<String, String>, state: &WebhookState) -> Result<Response, Rejection> {
    let mode_ok = query.get("hub.mode").is_some_and(|m| m == "subscribe");
    let token_ok = query
        .get("hub.verify_token")
        .is_some_and(|t| bool::from(t.as_bytes().ct_eq(state.verify_token.expose_secret().as_bytes())));
    match query.get("hub.challenge") {
        Some(challenge) if mode_ok && token_ok && !challenge.is_empty() => {
            Ok(warp::reply::with_header(challenge.clone(), "content-type", "text/plain").into_response())
        }
        _ => Err(warp::reject::custom(ApiError::VerificationFailed)),
    }
}

/// Verify, parse, (in durable mode: commit,) route, answer. Never waits on the Graph API or a bot. A correctly
/// signed body proves its `sender` is Meta: its next bodies get Meta's room in the body budget.
async fn receive(
    signature: Option<&HeaderValue>,
    sender: Option<(ClientAddr, &BodyBudget)>,
    body: &[u8],
    state: &WebhookState,
) -> Result<Response, Rejection> {
    let signature = signature.map(HeaderValue::as_bytes);
    if let Err(e) = state.secrets.verify(signature, body) {
        metrics::counter!(SIGNATURE_FAILURES).increment(1);
        return Err(warp::reject::custom(ApiError::Signature(e)));
    }
    if let Some((client, bodies)) = sender {
        bodies.prove(client.key());
    }
    let Parsed { mut events, unhandled } = parse(body).map_err(|e| warp::reject::custom(ApiError::Parse(e)))?;
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
    if let Some(inbox) = &state.inbox {
        // Only events some tenant owns are stored (receipts only if configured); the rest are acknowledged
        // and handed over (or counted by the router) once the commit succeeded.
        let mut owned: Vec<(Route, InboundEvent)> = Vec::with_capacity(events.len());
        let mut unowned = Vec::new();
        for event in events {
            let keep = state.durable_receipts || !event.is_receipt();
            let route = if keep { routed(state, &event).await? } else { None };
            match route {
                Some(route) => owned.push((route, event)),
                None => unowned.push(event),
            }
        }
        let refs: Vec<(&InboundEvent, &PageId)> = owned.iter().map(|(r, e)| (e, &r.page)).collect();
        let ids = if unhandled.is_empty() {
            inbox.commit(&refs).await
        } else {
            let (ids, kept) = tokio::join!(inbox.commit(&refs), inbox.keep_unhandled(&unhandled));
            if kept.is_err() {
                // The events are what Meta's 200 promises; the copy of what was not understood is for an
                // operator. Answering 503 for it would have Meta redeliver the whole body, again and again
                // if the part can never be kept.
                metrics::counter!(UNHANDLED_NOT_KEPT).increment(unhandled.len() as u64);
            }
            ids
        };
        let ids = ids.map_err(|_| warp::reject::custom(ApiError::Unavailable))?;
        for ((route, event), id) in owned.into_iter().zip(ids) {
            match id {
                // Stored already done (it needs no reply): the tenant only counts it.
                Some(_) if !state.router.needs_tenant(&event) => {
                    state.router.dispatch(event);
                }
                Some(id) => inbox.dispatch(event, id, route.page),
                // Already stored: a redelivery, which was (or is being) handled.
                None => metrics::counter!(EVENTS_IGNORED, "client" => route.client_slug.to_string(),
                    "page" => route.page.to_string(), "reason" => "duplicate")
                .increment(1),
            }
        }
        for event in unowned {
            state.router.dispatch(event);
        }
    } else {
        for event in events {
            // A Page connected elsewhere a moment ago is learned from the store before its event is unknown.
            routed(state, &event).await?;
            state.router.dispatch(event);
        }
    }
    Ok(warp::reply::with_header("EVENT_RECEIVED", "content-type", "text/plain").into_response())
}

/// The tenant `event` belongs to, asking the store about an account the engine does not know; a store that
/// cannot answer makes the webhook a 503 (Meta delivers again), never an acknowledged, dropped event.
async fn routed(state: &WebhookState, event: &InboundEvent) -> Result<Option<Route>, Rejection> {
    state.directory.route(event.account_id.as_str()).await.map_err(|_| warp::reject::custom(ApiError::Unavailable))
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
