//! The portal's shared chrome: the signed-in header, the outcome and notice banners, a connection's status in
//! plain words, dates, and the page that shows something once. Every page's own markup lives with its handler.

use chrono::{DateTime, TimeZone as _, Utc};
use maud::{Markup, html};
use switchboard_actors::telemetry::stats::StatsSnapshot;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::http::html;
use crate::onboarding::{Outcome, OutcomeKind};
use crate::store::{Integration, IntegrationStatus, User};

pub(super) fn header(user: &User, csrf: &str, title: &str) -> Markup {
    html! {
        header class="top" {
            h1 { (title) }
            form method="post" action="/portal/logout" {
                input type="hidden" name="csrf" value=(csrf);
                span { (user.email) " " }
                button type="submit" id="sign-out" class="quiet" { "Sign out" }
            }
        }
    }
}

pub(super) fn banner(outcome: Option<&Outcome>, notice: Option<&str>) -> Markup {
    html! {
        @if let Some(o) = outcome {
            div class={"banner " (o.tone().class())} id="outcome" {
                @if o.kind == OutcomeKind::Connected {
                    "Connected: " (o.connected.iter().map(|p| p.name.as_str()).collect::<Vec<_>>().join(", ")) "."
                    @for p in &o.refused { br; "Not connected: " (p.name) " (" (p.reason) ")." }
                    @for p in o.connected.iter().filter(|p| p.warning.is_some()) { br; (p.name) ": " (p.warning.clone().unwrap_or_default()) }
                } @else {
                    (o.message.clone().unwrap_or_else(|| "Nothing was connected.".to_owned()))
                    @for p in &o.refused { br; "Not connected: " (p.name) " (" (p.reason) ")." }
                }
            }
        }
        @if let Some(n) = notice { div class="banner ok" id="notice" { (n) } }
    }
}

/// The plain-words status of a page connection.
pub(super) fn status_words(i: &Integration) -> (&'static str, &'static str, String) {
    let reason = i.status_reason.clone().unwrap_or_default();
    match i.status {
        IntegrationStatus::Connected => ("Connected", "ok", "Messages to this Page are answered.".to_owned()),
        IntegrationStatus::NeedsReauth => {
            let why = if reason.contains("190/460") {
                "Facebook stopped accepting the connection because the password of the account that connected it changed."
                    .to_owned()
            } else if reason.contains("190/458") || reason.contains("removed the app") {
                "The Facebook account that connected this Page removed the app.".to_owned()
            } else {
                format!("Facebook no longer accepts this connection ({reason}).")
            };
            ("Needs reconnection", "warn", format!("{why} Press \"Connect with Facebook\" to reconnect it."))
        }
        IntegrationStatus::Revoked => (
            "Revoked",
            "err",
            format!("Disconnected{}.", if reason.is_empty() { String::new() } else { format!(": {reason}") }),
        ),
        IntegrationStatus::Error => ("Error", "err", format!("{reason}. Fix it on Facebook, then reconnect.")),
    }
}

pub(super) fn page_name(i: &Integration) -> String {
    i.page_name.clone().unwrap_or_else(|| i.page_id.to_string())
}

pub(super) fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub(super) fn last_event(stats: &StatsSnapshot) -> String {
    stats
        .last_event_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or_else(|| "none since the service started".to_owned(), when)
}

pub(super) fn show_once(title: &str, lines: Markup) -> Response {
    html::page(
        StatusCode::OK,
        title,
        html! {
            h1 { (title) }
            (lines)
            p { a href="/portal" { "Back to the portal" } }
        },
    )
}
