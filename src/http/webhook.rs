//! `/api/facebook-webhook`: where Meta's traffic for every tenant enters.
//!
//! GET is the verification handshake. POST is verified (signature over the raw bytes), parsed entry by entry
//! and event by event, ingested (`crate::inbox::Ingest`: committed in durable mode, handed to the tenants'
//! actors), and answered at once: the answer never waits on the Graph API or any bot. Only a body that is too large, unsigned or wrongly signed, or not JSON is refused;
//! a signed body comes from Meta, and whatever in it Switchboard does not understand is acknowledged with the
//! rest, counted by kind, and (in durable mode) kept raw for an operator.

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq as _;
use warp::http::HeaderValue;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::body::{Body, BodyBudget, limited};
use super::error::ApiError;
use super::server::ClientAddr;
use crate::inbox::Ingest;
use crate::meta::webhook::{WebhookSecrets, parse};

pub const SIGNATURE_FAILURES: &str = "switchboard_webhook_signature_failures_total";

/// What the webhook routes need.
#[derive(Clone)]
pub struct WebhookState {
    pub secrets: Arc<WebhookSecrets>,
    pub verify_token: Arc<SecretString>,
    pub max_body_bytes: u64,
    /// Where verified bodies go (the durable inbox, or straight to the tenants).
    pub ingest: Ingest,
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

/// Verify, parse, ingest, answer. Never waits on the Graph API or a bot. A correctly signed body proves its
/// `sender` is Meta: its next bodies get Meta's room in the body budget.
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
    let parsed = parse(body).map_err(|e| warp::reject::custom(ApiError::Parse(e)))?;
    state.ingest.ingest(parsed).await.map_err(|_| warp::reject::custom(ApiError::Unavailable))?;
    Ok(warp::reply::with_header("EVENT_RECEIVED", "content-type", "text/plain").into_response())
}
