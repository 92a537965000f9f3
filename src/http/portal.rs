//! The client portal: sign-in, a client's Pages with their status and "Connect with Facebook", the
//! operator's view of every tenant. Every handler checks on the server that the signed-in user may see
//! and act on what it names: another client's page is a 404, operator pages are a 403 for client users, and
//! a client user whose account names no client is refused everywhere (fail closed), whatever the database
//! holds. A user invited with a one-time password must choose their own before anything else.
//!
//! - `routes`: the route table;
//! - `access`: who is signed in, and the checks a handler composes (ready, form, operator, owned page);
//! - `account`: signing in and out, choosing a password;
//! - `pages`: the home page, connecting and disconnecting Pages;
//! - `admin`: what operators do (clients, onboarding links, invitations);
//! - `session`: cookies' names and sign-in throttling; `views`: the HTML.

mod access;
mod account;
mod admin;
mod bot;
mod charts;
mod conversations;
mod pages;
mod routes;
pub mod session;
mod settings;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use switchboard_actors::Router;
use warp::reply::Response;

pub use self::routes::routes;
use self::session::LoginThrottle;
use crate::clients::Clients;
use crate::http::cookies::{cookie, cookie_name};
use crate::onboarding::Onboarding;
use crate::store::Store;

type Form = HashMap<String, String>;

/// What the portal needs.
#[derive(Clone)]
pub struct PortalState {
    pub store: Store,
    /// The business steps that change a client (its settings, its rules), shared with the CLI.
    pub clients: Clients,
    pub onboarding: Onboarding,
    pub router: Router,
    /// Mark cookies Secure and `__Host-` (the public URL is https).
    pub secure: bool,
    pub throttle: Arc<LoginThrottle>,
    /// Requests per signed-in session.
    pub pace: Arc<session::SessionPace>,
    pub session_ttl: Duration,
    /// In a cluster: the figures every node shows are the owners' snapshots in the database, not this node's.
    pub shared_figures: bool,
    /// The deployment's answer when a client's rules match nothing and it has no fallback ("Try it").
    pub fallback_reply: String,
    /// `engine.human_pause_secs`: how long a person's answer silences the bot, for clients that set none.
    pub human_pause: Duration,
    /// Messages are kept (`inbox.mode = "durable"`), so there are conversations to show.
    pub keeps_messages: bool,
    /// `engine.relay_allow_private`: a relay URL may name a private address (and use http).
    pub relay_allow_private: bool,
    /// The deployment's send rate per Page, for clients that set none.
    pub send_rate: u32,
    /// `inbox.stuck_after_secs`: where the charts draw the line past which a Page counts as stuck.
    pub stuck_after: Duration,
}

impl PortalState {
    fn cookie_name(&self, name: &'static str) -> String {
        cookie_name(name, self.secure)
    }

    fn set_cookie(&self, name: &'static str, value: &str, max_age: u64) -> String {
        cookie(&self.cookie_name(name), value, max_age, self.secure)
    }
}

fn with_cookie(mut response: Response, set_cookie: &str) -> Response {
    if let Ok(value) = warp::http::HeaderValue::from_str(set_cookie) {
        response.headers_mut().append("set-cookie", value);
    }
    response
}
