//! `/api/facebook-webhook`: where Meta's traffic for every tenant enters.
//!
//! GET is the verification handshake. POST is verified (signature over the raw bytes), parsed whole,
//! routed event by event to the tenants' actors, and answered at once: the answer never waits on the Graph
//! API or any bot. Nothing is processed unless the signature and the whole body are valid.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq as _;
use switchboard_actors::metrics::EVENTS_IGNORED;
use switchboard_actors::{InboundEvent, Route, Router};
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use crate::webhook::{WebhookSecrets, parse};

pub const SIGNATURE_FAILURES: &str = "switchboard_webhook_signature_failures_total";

/// What the webhook routes need.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: Arc<WebhookSecrets>,
    pub verify_token: Arc<SecretString>,
    pub router: Router,
    pub max_body_bytes: u64,
    /// Set in durable mode: events are committed before the 200.
    pub inbox: Option<crate::inbox::Inbox>,
    /// In durable mode, commit read and delivery receipts too.
    pub durable_receipts: bool,
}

pub fn routes(state: WebhookState) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
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
        .and(warp::body::content_length_limit(max_body))
        // Just the signature header (a refcounted clone of its bytes), not a copy of the whole header map.
        .and(warp::header::value("x-hub-signature-256").map(Some).or(warp::any().map(|| None)).unify())
        .and(warp::body::bytes())
        .and(with_state)
        .and_then(|signature: Option<HeaderValue>, body: Bytes, state: WebhookState| async move {
            receive(signature.as_ref(), &body, &state).await
        });
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

/// Verify, parse, (in durable mode: commit,) route, answer. Never waits on the Graph API or a bot.
async fn receive(signature: Option<&HeaderValue>, body: &[u8], state: &WebhookState) -> Result<Response, Rejection> {
    let signature = signature.map(HeaderValue::as_bytes);
    if let Err(e) = state.secrets.verify(signature, body) {
        metrics::counter!(SIGNATURE_FAILURES).increment(1);
        return Err(warp::reject::custom(ApiError::Signature(e)));
    }
    let mut events = parse(body).map_err(|e| warp::reject::custom(ApiError::Parse(e)))?;
    // Meta does not promise order within a body after redeliveries: hand events over in timestamp order
    // (stable, so equal timestamps keep Meta's order).
    events.sort_by_key(|e| e.timestamp);
    if let Some(inbox) = &state.inbox {
        // Only events some tenant owns are stored (receipts only if configured); the rest are acknowledged
        // and handed over (or counted by the router) once the commit succeeded.
        let mut owned: Vec<(Route, InboundEvent)> = Vec::with_capacity(events.len());
        let mut unowned = Vec::new();
        for event in events {
            let keep = state.durable_receipts || !event.is_receipt();
            match keep.then(|| state.router.route(event.account_id.as_str())).flatten() {
                Some(route) => owned.push((route, event)),
                None => unowned.push(event),
            }
        }
        let refs: Vec<(&InboundEvent, &str)> = owned.iter().map(|(r, e)| (e, r.page.as_str())).collect();
        let ids = inbox.commit(&refs).await.map_err(|_| warp::reject::custom(ApiError::Unavailable))?;
        for ((route, event), id) in owned.into_iter().zip(ids) {
            match id {
                // Stored already done (it needs no reply): the tenant only counts it.
                Some(_) if !event.wants_reply() => {
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
            state.router.dispatch(event);
        }
    }
    Ok(warp::reply::with_header("EVENT_RECEIVED", "content-type", "text/plain").into_response())
}
