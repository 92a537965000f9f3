//! The HTTP front door: every route the server answers, assembled in one place, with request counting
//! and the one `recover` that maps failures to status codes.

pub mod body;
pub mod cookies;
mod error;
mod headers;
mod health;
pub mod html;
mod oauth;
pub mod portal;
pub mod server;
pub mod throttle;
pub mod webhook;

use std::sync::Arc;

use switchboard_actors::Router;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

pub use body::BodyBudget;
pub use error::{ApiError, PageError};
pub use headers::SecurityHeaders;
pub use health::metrics_routes;
pub use webhook::WebhookState;

use crate::store::Store;

pub const HTTP_REQUESTS: &str = "switchboard_http_requests_total";

/// Everything the routes need.
#[derive(Clone)]
pub struct HttpState {
    /// The memory every request body being read shares.
    pub bodies: Arc<BodyBudget>,
    pub store: Store,
    pub router: Router,
    pub webhook: WebhookState,
    pub security: SecurityHeaders,
    pub onboarding: crate::onboarding::Onboarding,
    pub portal: crate::http::portal::PortalState,
    /// The throttles every node shares (sign-in, "Connect with Facebook").
    pub throttle: Arc<throttle::Throttle>,
}

/// All routes, with rejections mapped to status codes in one place and every request counted by route
/// and status (both labels from a fixed set).
pub fn routes(state: HttpState) -> BoxedFilter<(Response,)> {
    let counted = warp::log::custom(|info| {
        metrics::counter!(HTTP_REQUESTS, "route" => route_label(info.path()), "status" => status_label(info.status().as_u16()))
            .increment(1);
    });
    let security = state.security;
    // warp's `or` clones its second filter, state and all, for every request that reaches it, so each branch
    // after the webhook is boxed: its clone is one reference count, not a deep copy of its state. Measured:
    // unboxed, cloning and dropping the portal's and OAuth's state took a fifth of a webhook's CPU time.
    webhook::routes(state.webhook, state.bodies.clone())
        .or(oauth::routes(state.onboarding, state.bodies.clone(), state.throttle).boxed())
        .unify()
        .or(portal::routes(state.portal, state.bodies).boxed())
        .unify()
        .or(health::routes(state.store, state.router).boxed())
        .unify()
        .recover(error::recover)
        .unify()
        .with(counted)
        .map(warp::Reply::into_response)
        .map(move |response: Response| security.apply(response))
        .boxed()
}

fn route_label(path: &str) -> &'static str {
    match path {
        "/api/facebook-webhook" => "webhook",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        p if p.starts_with("/api/auth/") => "auth",
        p if p.starts_with("/portal") => "portal",
        _ => "other",
    }
}

/// A status's class: one label scheme for every route.
fn status_label(status: u16) -> &'static str {
    match status {
        s if s < 200 => "1xx",
        s if s < 300 => "2xx",
        s if s < 400 => "3xx",
        s if s < 500 => "4xx",
        _ => "5xx",
    }
}
