//! The client portal: sign-in, a client's Pages with their status and "Connect with Facebook", the
//! operator's view of every tenant. Every handler checks on the server that the signed-in user may see
//! and act on what it names: another client's page is a 404, operator pages are a 403 for client users, and
//! a client user whose account names no client is refused everywhere (fail closed), whatever the database
//! holds. A user invited with a one-time password must choose their own before anything else.
//!
//! Each page's handler and its markup live together, one file a page (server-rendered with maud, which escapes
//! every value; every page works without JavaScript):
//! - `home`: a client's Pages, or every client for an operator;
//! - `connect`: connecting and disconnecting Pages; `health`: a Page's last 24 hours and 30 days;
//! - `conversations`: a Page's conversations and one conversation; `people`: the ones a person handles;
//! - `bot`: a client edits its keyword rules; `settings`: a client's settings;
//! - `admin`: what operators do (clients, onboarding links, invitations);
//! - `account`: signing in and out, choosing a password.
//!
//! And what they share: `routes` (the route table), `access` (who is signed in, and the checks a handler
//! composes), `session` (cookies, sign-in lanes, pacing), `chrome` (header, banners, status words) and `charts`.

mod access;
mod account;
mod admin;
mod ai;
mod bot;
mod charts;
mod chrome;
mod connect;
mod conversations;
mod health;
mod home;
mod people;
mod routes;
pub mod session;
mod settings;

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

/// A form body or a query string as sent (a field given twice keeps its last value).
type RawForm = HashMap<String, String>;

/// `raw` read into a page's typed form `T`. Every form's fields default to empty, so reading fails only for
/// a form no page sends; its handler names what is missing in words.
fn read<T: serde::de::DeserializeOwned>(raw: RawForm) -> Result<T, warp::Rejection> {
    let once = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(&raw).finish();
    serde_urlencoded::from_str(&once).map_err(|e| warp::reject::custom(crate::http::ApiError::BadForm(e.to_string())))
}

/// A query string that names only what to say after an action (`?notice=…`).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Notice {
    notice: Option<String>,
}

/// A form that carries nothing but the session's CSRF token (a button).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Button {
    csrf: String,
}

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
    /// The model server for AI answers ("Try it"), when `ai.base_url` is set.
    pub ai: Option<Arc<crate::adapters::ai::Ai>>,
}

impl PortalState {
    fn cookie_name(&self, name: &'static str) -> String {
        cookie_name(name, self.secure)
    }

    fn set_cookie(&self, name: &'static str, value: &str, max_age: u64) -> String {
        cookie(&self.cookie_name(name), value, max_age, self.secure)
    }

    /// The age (seconds) at which a Page counts as stuck: the dashed line of the charts.
    fn stuck_after_secs(&self) -> i64 {
        i64::try_from(self.stuck_after.as_secs()).unwrap_or(60)
    }
}

fn with_cookie(mut response: Response, set_cookie: &str) -> Response {
    if let Ok(value) = warp::http::HeaderValue::from_str(set_cookie) {
        response.headers_mut().append("set-cookie", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, serde::Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        csrf: String,
        before: Option<String>,
        #[serde(flatten)]
        rows: HashMap<String, String>,
    }

    fn raw(pairs: &[(&str, &str)]) -> RawForm {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn a_form_reads_into_its_fields_with_what_is_missing_empty_and_the_rest_in_its_rows() {
        let form: Sample = read(raw(&[("csrf", "t"), ("words_0", "hours"), ("reply_0", "9 to 5 & more")])).unwrap();
        assert_eq!(form.csrf, "t");
        assert_eq!(form.before, None);
        assert_eq!(form.rows.get("reply_0").map(String::as_str), Some("9 to 5 & more"));
        let empty: Sample = read(RawForm::new()).unwrap();
        assert_eq!(empty, Sample::default());
        let notice: Notice = read(raw(&[("notice", "saved"), ("other", "x")])).unwrap();
        assert_eq!(notice.notice.as_deref(), Some("saved"));
    }
}
