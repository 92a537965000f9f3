//! The home page: a client's Pages (their status in plain words, their figures and last 24 hours, "Connect with
//! Facebook"), or for an operator every client and every tenant, with adding clients and inviting users.

use maud::html;
use switchboard_actors::telemetry::stats::StatsSnapshot;
use warp::http::StatusCode;
use warp::reply::Response;

use super::PortalState;
use super::access::{Page, Principal, Signed, signed_in};
use super::charts::{DAY_SECS, SLOT_SECS, SLOTS, Timeline, charts};
use super::chrome::{banner, header, last_event, page_name, status_words, when};
use crate::cluster::shared_figures;
use crate::http::html;
use crate::onboarding::Outcome;
use crate::store::{Client, Integration, IntegrationStatus, StoreError, User};

/// What the home page says: after an action (`notice`), or after Facebook Login (`result`, a random id).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct HomeQuery {
    notice: Option<String>,
    result: Option<String>,
}

pub(super) async fn home(signed: Option<Signed>, q: &HomeQuery, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let principal = g.principal()?;
    let user = g.user();
    let csrf = &g.session.csrf_token;
    let notice = match q.notice.as_deref() {
        Some("disconnected") => Some("The Page was disconnected."),
        Some("client-added") => Some("The client was added."),
        Some("password-changed") => Some("Your password was changed."),
        _ => None,
    };
    let integrations = s.store.list_integrations().await?;
    let shared = if s.shared_figures { shared_figures(&s.store).await } else { Default::default() };
    // The last 24 hours of every Page, in 15-minute slots (each Page's minutes, summed).
    let now = crate::clock::now().timestamp();
    let history = s.store.history(None, 60, now - DAY_SECS, SLOT_SECS).await?;
    let day = |pages: &[&str]| {
        let rows: Vec<_> = history.iter().filter(|h| pages.contains(&h.page_id.as_str())).collect();
        Timeline::new(&rows, now, SLOT_SECS, SLOTS, "15 min", "24 h")
    };
    let row = |i: Integration| {
        let (stats, active) = match shared.get(i.page_id.as_str()) {
            Some(figures) => *figures,
            None if s.shared_figures => Default::default(),
            None => (s.router.stats(&i.page_id), s.router.is_active(&i.page_id)),
        };
        PageRow { stats, active, day: day(&[i.page_id.as_str()]), integration: i }
    };
    match principal {
        Principal::Client(client_id) => {
            let client =
                s.store.client_by_id(client_id).await?.ok_or_else(|| StoreError::NotFound("client".to_owned()))?;
            let outcome = match q.result.as_deref().filter(|id| crate::secrets::tokens::is_token(id)) {
                Some(id) => s
                    .store
                    .oauth_outcome(id)
                    .await?
                    .filter(|o| o.client_id == client_id)
                    .and_then(|o| serde_json::from_str::<Outcome>(&o.outcome).ok()),
                None => None,
            };
            let rows: Vec<PageRow> = integrations.into_iter().filter(|i| i.client_id == client_id).map(row).collect();
            Ok(client_view(user, csrf, &client, &rows, s.stuck_after_secs(), outcome.as_ref(), notice))
        }
        Principal::Operator => {
            let mut panels: Vec<ClientPanel> = s
                .store
                .list_clients()
                .await?
                .into_iter()
                .map(|client| ClientPanel { client, rows: Vec::new(), day: Timeline::default() })
                .collect();
            for i in integrations {
                if let Some(panel) = panels.iter_mut().find(|p| p.client.id == i.client_id) {
                    panel.rows.push(row(i));
                }
            }
            for panel in &mut panels {
                let pages: Vec<&str> = panel.rows.iter().map(|r| r.integration.page_id.as_str()).collect();
                panel.day = day(&pages);
            }
            Ok(operator_view(user, csrf, &panels, s.stuck_after_secs(), notice))
        }
    }
}

/// One row of a Pages list: the integration, its live figures, and its last 24 hours.
struct PageRow {
    pub integration: Integration,
    pub stats: StatsSnapshot,
    pub active: bool,
    pub day: Timeline,
}

struct ClientPanel {
    pub client: Client,
    pub rows: Vec<PageRow>,
    /// The client's Pages' last 24 hours, added up.
    pub day: Timeline,
}

fn client_view(
    user: &User,
    csrf: &str,
    client: &Client,
    rows: &[PageRow],
    stuck_after: i64,
    outcome: Option<&Outcome>,
    notice: Option<&str>,
) -> Response {
    html::page(
        StatusCode::OK,
        &client.name,
        html! {
            (header(user, csrf, &client.name))
            (banner(outcome, notice))
            form method="post" action="/portal/connect" {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" id="connect" { "Connect with Facebook" }
            }
            p { a href="/portal/bot" id="edit-bot" { "Your bot: what it answers" } " · "
                a href={"/portal/clients/" (client.slug) "/settings"} id="settings" { "Settings" } }
            h2 { "Your Pages" }
            @if rows.is_empty() { p { "No Page is connected yet. Press \"Connect with Facebook\" and choose the Pages Switchboard should answer for." } }
            @for row in rows {
                @let i = &row.integration;
                @let (label, class, words) = status_words(i);
                section class="page card" data-page=(i.page_id) {
                    h3 class="tight" { (page_name(i)) " " small { "(" (i.page_id) ")" } }
                    @if let Some(ig) = &i.instagram_account_id { p { "Instagram account " (ig) } }
                    p { span class={"badge banner " (class)} data-status=(i.status) { (label) } " since " (when(i.status_changed_at)) }
                    p class="reason" { (words) }
                    p { "Last message received: " (last_event(&row.stats)) " · Replies in the last hour: " (row.stats.replies_last_hour) }
                    h4 class="tight" { "The last 24 hours" }
                    (charts(&format!("page-{}", i.page_id), &row.day, stuck_after))
                    @if i.status != IntegrationStatus::Revoked {
                        a href={"/portal/pages/" (i.page_id) "/conversations"} class="conversations" { "Conversations" }
                        " · "
                        a href={"/portal/pages/" (i.page_id) "/people"} class="people" { "Conversations a person is handling" }
                        " · "
                        a href={"/portal/pages/" (i.page_id) "/health"} class="health" { "The last 30 days" }
                        " · "
                        a href={"/portal/pages/" (i.page_id) "/disconnect"} class="disconnect" { "Disconnect" }
                    }
                }
            }
        },
    )
}

fn operator_view(user: &User, csrf: &str, panels: &[ClientPanel], stuck_after: i64, notice: Option<&str>) -> Response {
    html::page(
        StatusCode::OK,
        "Operator",
        html! {
            (header(user, csrf, "All clients"))
            (banner(None, notice))
            @for panel in panels {
                section class="client card" data-client=(panel.client.slug) {
                    h2 class="tight" { (panel.client.name) " " small { "(" (panel.client.slug) ")" } }
                    p class="tight" { a href={"/portal/clients/" (panel.client.slug) "/settings"} class="settings" { "Settings: bot, send rate, pause" } }
                    @if panel.rows.is_empty() { p { "No Page connected." } }
                    @if !panel.rows.is_empty() {
                        h3 class="tight" { "All its Pages, the last 24 hours" }
                        (charts(&format!("client-{}", panel.client.slug), &panel.day, stuck_after))
                    }
                    @for row in &panel.rows {
                        @let i = &row.integration;
                        @let (label, class, words) = status_words(i);
                        div class="page row" data-page=(i.page_id) {
                            strong { (page_name(i)) } " (" (i.page_id) ") "
                            span class={"badge small banner " (class)} data-status=(i.status) { (label) }
                            br; small { (words) }
                            br; small class="figures" {
                                "events " (row.stats.events) " · replies " (row.stats.replies) " · send errors " (row.stats.send_errors)
                                " · throttled pauses " (row.stats.throttled) " · queue " (row.stats.queue_depth)
                                " · actor " (if row.active { "running" } else { "idle" })
                                " · last event " (last_event(&row.stats))
                            }
                            (charts(&format!("page-{}", i.page_id), &row.day, stuck_after))
                            a href={"/portal/pages/" (i.page_id) "/conversations"} class="conversations" { "Conversations" }
                            " · " a href={"/portal/pages/" (i.page_id) "/people"} class="people" { "Conversations a person is handling" }
                            " · " a href={"/portal/pages/" (i.page_id) "/health"} class="health" { "The last 30 days" }
                        }
                    }
                    form method="post" action={"/portal/clients/" (panel.client.slug) "/link"} class="spaced" {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" { "Create an onboarding link" }
                    }
                }
            }
            h2 { "Add a client" }
            form method="post" action="/portal/clients" {
                input type="hidden" name="csrf" value=(csrf);
                label { "Name " input type="text" name="name" required maxlength="200"; } " "
                button type="submit" id="add-client" { "Add client" }
            }
            h2 { "Invite a user" }
            form method="post" action="/portal/users" {
                input type="hidden" name="csrf" value=(csrf);
                p { label { "E-mail " input type="email" name="email" required; } }
                p { label { "Role " select name="role" required {
                    option value="" disabled selected { "Choose a role…" }
                    option value="client" { "Client user (one business)" }
                    option value="operator" { "Operator (every client)" }
                } } }
                p { label { "Client (for a client user) " select name="client" {
                    option value="" { "—" }
                    @for panel in panels { option value=(panel.client.slug) { (panel.client.name) } }
                } } }
                button type="submit" id="invite" { "Invite" }
            }
        },
    )
}
