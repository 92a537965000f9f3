//! Server-rendered HTML for people (maud escapes every value): the layout, error pages, the OAuth result
//! page and the data-deletion status page. No external assets, readable on a phone.

use maud::{DOCTYPE, Markup, html};
use warp::Reply as _;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::onboarding::{Outcome, OutcomeKind};
use crate::store::DeletionRequest;

pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Switchboard" }
                link rel="stylesheet" href=(STYLESHEET_PATH);
            }
            body { main { (body) } }
        }
    }
}

/// Where the pages' one stylesheet is served: the Content-Security-Policy allows styles from this origin only,
/// so there is no inline style (and no script at all).
pub const STYLESHEET_PATH: &str = "/assets/switchboard.css";

/// The stylesheet, served at [`STYLESHEET_PATH`].
pub const STYLESHEET: &str = "body{font-family:system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1c1e21}\
main{max-width:40rem;margin:0 auto;padding:1.5rem 1rem}h1{font-size:1.4rem}\
.banner{padding:.8rem 1rem;border-radius:.4rem;margin:1rem 0}.ok{background:#e7f6ea}.warn{background:#fff4e0}.err{background:#fdecec}\
a.button,button{display:inline-block;background:#1877f2;color:#fff;border:0;border-radius:.4rem;padding:.6rem 1rem;font-size:1rem;text-decoration:none}\
button.quiet{background:#606770}button.danger{background:#c0392b}\
header.top{display:flex;justify-content:space-between;align-items:center;flex-wrap:wrap}\
.card{background:#fff;border-radius:.4rem;padding:.8rem 1rem;margin:.8rem 0}.tight{margin:.2rem 0}\
.row{border-top:1px solid #ddd;padding:.4rem 0}.badge{padding:.2rem .5rem}.badge.small{padding:.1rem .4rem}\
.spaced{margin-top:.5rem}input.wide{width:100%}\
ul{padding-left:1.2rem}li{margin:.3rem 0}\
.line{border-left:.25rem solid #ccd0d5;padding:.2rem .6rem;margin:.4rem 0}.line.bot{border-color:#1877f2}.line.person{border-color:#e4a11b}\
.said{white-space:pre-wrap;overflow-wrap:anywhere}.state{font-size:.9rem;padding:.1rem .4rem;border-radius:.3rem;display:inline-block}\
.quiet{background:#eceef1}\
.charts{display:flex;flex-wrap:wrap;gap:.4rem .8rem;margin:.4rem 0}.chart{margin:0;flex:1 1 9.5rem;max-width:13rem}\
.chart svg{width:100%;height:auto;background:#fff;border:1px solid #ddd;border-radius:.2rem}.chart figcaption{font-size:.8rem}";

pub fn page(status: StatusCode, title: &str, body: Markup) -> Response {
    warp::reply::with_status(warp::reply::html(layout(title, body).into_string()), status).into_response()
}

pub fn error(status: StatusCode, message: &str) -> Response {
    page(
        status,
        "Something went wrong",
        html! {
            h1 { "Something went wrong" }
            p class="banner err" { (message) }
        },
    )
}

/// What the result page offers to try again.
pub enum Retry {
    /// Everything was connected.
    NotNeeded,
    /// The link the flow started from, still valid.
    Link(String),
    /// The link the flow started from has expired (or the flow did not start from one).
    Expired,
}

/// What happened in a Facebook Login, in plain words.
/// The first page of an onboarding link: whose the Pages will be, before anything goes to Facebook. `fields`
/// are the link's own (sent on with the button), `shown` proves the page was shown in this browser.
pub fn start(client_name: &str, fields: &[(&str, &str)], shown: &str) -> Response {
    page(
        StatusCode::OK,
        "Connect your Facebook Pages",
        html! {
            h1 { "Connect your Facebook Pages" }
            p class="banner warn" id="client" {
                "You are connecting your Facebook Pages to " strong { (client_name) } "."
            }
            p {
                "Facebook will ask which Pages to share. Whoever runs " strong { (client_name) } " on Switchboard will \
                 then answer those Pages' Messenger and Instagram messages with their bot."
            }
            p { "If you do not work with " (client_name) ", stop here: this link was meant for them." }
            form method="post" action="/api/auth/facebook/start" {
                @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                input type="hidden" name="shown" value=(shown);
                button type="submit" id="continue" { "Continue to Facebook" }
            }
        },
    )
}

pub fn outcome(o: &Outcome, retry: &Retry) -> Response {
    let class = o.tone().class();
    let headline = match o.kind {
        OutcomeKind::Connected if o.refused.is_empty() => "Your Facebook connection is set up",
        OutcomeKind::Connected => "Some Pages were connected",
        OutcomeKind::MissingPermissions => "Nothing was connected: permissions are missing",
        OutcomeKind::Cancelled | OutcomeKind::Failed => "Nothing was connected",
    };
    page(
        StatusCode::OK,
        headline,
        html! {
            h1 { (headline) }
            @let client = if o.client_name.is_empty() { o.client_slug.as_str() } else { o.client_name.as_str() };
            p id="client" { "Business: " strong { (client) } }
            @if let Some(message) = &o.message { p class={"banner " (class)} id="outcome" { (message) } }
            @if !o.connected.is_empty() {
                h2 { "Connected" }
                ul id="connected" {
                    @for p in &o.connected {
                        li {
                            strong { (p.name) } " (" (p.id) ")"
                            @if let Some(ig) = &p.instagram { " with its Instagram account " (ig) }
                            @if let Some(w) = &p.warning { br; span class="banner warn" { "Needs attention: " (w) } }
                        }
                    }
                }
            }
            @if !o.refused.is_empty() {
                h2 { "Not connected" }
                ul id="refused" { @for p in &o.refused { li { strong { (p.name) } " (" (p.id) "): " (p.reason) } } }
            }
            @match retry {
                Retry::Link(link) => p { a class="button" href=(link) { "Connect with Facebook again" } },
                Retry::Expired => p id="expired" { "The link you were sent has expired. Ask for a new one to connect again." },
                Retry::NotNeeded => {},
            }
        },
    )
}

pub fn deletion_status(request: &DeletionRequest) -> Response {
    page(
        StatusCode::OK,
        "Data deletion status",
        html! {
            h1 { "Data deletion request " (request.confirmation_code) }
            p { "Received " (request.requested_at.format("%Y-%m-%d %H:%M UTC")) "." }
            @match request.completed_at {
                Some(done) => p class="banner ok" {
                    "Completed " (done.format("%Y-%m-%d %H:%M UTC")) ". The Page connections made with your Facebook account were \
                     disconnected, their access tokens erased, and the record of who connected them removed ("
                    (request.integrations_affected) " connection(s))."
                },
                None => p class="banner warn" { "In progress." },
            }
        },
    )
}
