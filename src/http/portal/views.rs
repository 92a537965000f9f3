//! The portal's pages: sign-in, the client's view of its Pages, the operator's view of every tenant, and
//! the small confirmation pages. Server-rendered (maud escapes every value); works without JavaScript.

use chrono::{DateTime, TimeZone as _, Utc};
use maud::{Markup, html};
use warp::http::StatusCode;
use warp::reply::Response;

use super::charts::{Timeline, charts};
use crate::http::html;
use crate::onboarding::{Outcome, OutcomeKind};
use crate::store::{Client, Integration, IntegrationStatus, User};
use switchboard_actors::stats::StatsSnapshot;

/// One row of a Pages list: the integration, its live figures, and its last 24 hours.
pub struct PageRow {
    pub integration: Integration,
    pub stats: StatsSnapshot,
    pub active: bool,
    pub day: Timeline,
}

pub fn login(csrf: &str, problem: Option<&str>, status: StatusCode) -> Response {
    html::page(
        status,
        "Sign in",
        html! {
            h1 { "Sign in to Switchboard" }
            @if let Some(p) = problem { p class="banner err" id="problem" { (p) } }
            form method="post" action="/portal/login" {
                input type="hidden" name="csrf" value=(csrf);
                p { label { "E-mail" br; input type="email" name="email" autocomplete="username" required; } }
                p { label { "Password" br; input type="password" name="password" autocomplete="current-password" required; } }
                button type="submit" id="sign-in" { "Sign in" }
            }
        },
    )
}

fn header(user: &User, csrf: &str, title: &str) -> Markup {
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

/// The plain-words status of a page connection.
pub fn status_words(i: &Integration) -> (&'static str, &'static str, String) {
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

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn last_event(stats: &StatsSnapshot) -> String {
    stats
        .last_event_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .map_or_else(|| "none since the service started".to_owned(), when)
}

fn banner(outcome: Option<&Outcome>, notice: Option<&str>) -> Markup {
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

pub fn client_view(
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
                    h3 class="tight" { (i.page_name.clone().unwrap_or_else(|| i.page_id.to_string())) " " small { "(" (i.page_id) ")" } }
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

/// A Page's figures over time: its last 24 hours and its last 30 days, with its status in words.
pub fn health(i: &Integration, day: &Timeline, month: &Timeline, stuck_after: i64) -> Response {
    let name = i.page_name.clone().unwrap_or_else(|| i.page_id.to_string());
    let (label, class, words) = status_words(i);
    html::page(
        StatusCode::OK,
        &name,
        html! {
            p { a href="/portal" { "← Back" } }
            h1 { (name) " " small { "(" (i.page_id) ")" } }
            p { span class={"badge banner " (class)} data-status=(i.status) { (label) } " " (words) }
            h2 { "The last 24 hours" }
            (charts("day", day, stuck_after))
            h2 { "The last 30 days" }
            (charts("month", month, stuck_after))
        },
    )
}

pub fn confirm_disconnect(csrf: &str, i: &Integration) -> Response {
    let name = i.page_name.clone().unwrap_or_else(|| i.page_id.to_string());
    html::page(
        StatusCode::OK,
        "Disconnect a Page",
        html! {
            h1 { "Disconnect " (name) "?" }
            p { "Switchboard will stop answering messages to this Page, unsubscribe it at Facebook and erase its access token. You can connect it again later." }
            form method="post" action={"/portal/pages/" (i.page_id) "/disconnect"} {
                input type="hidden" name="csrf" value=(csrf);
                button type="submit" id="confirm-disconnect" class="danger" { "Disconnect " (name) }
                " " a href="/portal" { "Cancel" }
            }
        },
    )
}

/// The conversations a person at the business is handling on a Page.
pub fn people(csrf: &str, i: &Integration, holds: &[(String, i64)], notice: Option<&str>) -> Response {
    let name = i.page_name.clone().unwrap_or_else(|| i.page_id.to_string());
    html::page(
        StatusCode::OK,
        "Conversations a person is handling",
        html! {
            h1 { "Conversations a person is handling on " (name) }
            @if let Some(notice) = notice { p class="banner ok" { (notice) } }
            p { "When someone at your business answers a customer in the Page Inbox or the Instagram Inbox, or a customer asks for a person, the bot stays silent in that conversation until the pause ends or the conversation is marked done in the inbox. You can also hand it back to the bot here; a conversation a customer asked a person for was passed to the inbox too: mark it done there, or Meta keeps delivering that customer's messages to the inbox only." }
            @if holds.is_empty() { p id="no-people" { "None: the bot answers every conversation." } }
            @for (person, until) in holds {
                section class="card conversation" data-person=(person) {
                    p { "Customer " (person) " · the bot stays silent until "
                        (chrono::DateTime::from_timestamp_millis(*until).map(when).unwrap_or_default()) }
                    form method="post" action={"/portal/pages/" (i.page_id) "/people/" (person) "/release"} {
                        input type="hidden" name="csrf" value=(csrf);
                        button type="submit" class="hand-back" { "Hand back to the bot" }
                    }
                }
            }
            p { a href="/portal" { "Back to your Pages" } }
        },
    )
}

/// The bot editor: rules, button answers and the fallback as one form, "Try it" and "Save".
pub fn bot_editor(csrf: &str, e: &super::bot::Editor) -> Response {
    let status = if e.problems.is_empty() { StatusCode::OK } else { StatusCode::UNPROCESSABLE_ENTITY };
    let rule = |i: usize| e.rules.keywords.get(i);
    let postbacks: Vec<(&String, &String)> = e.rules.postbacks.iter().collect();
    html::page(
        status,
        "Your bot",
        html! {
            h1 { "Your bot" }
            @if e.saved { p class="banner ok" id="saved" { "Saved. Your Pages answer with these rules from their next message." } }
            @if e.relay { p class="banner warn" { "Your own bot (relay) answers your Pages; these rules are kept for when you switch back." } }
            @if !e.problems.is_empty() {
                div class="banner err" id="problems" { p { "Nothing was saved:" } ul { @for p in &e.problems { li { (p) } } } }
            }
            form method="post" action="/portal/bot" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="version" value=(e.version);
                h2 { "Keyword rules" }
                p { "The first rule with a word or phrase found in the customer's message answers (capital letters do not matter). Separate words and phrases with commas." }
                @for i in 0..e.rows {
                    fieldset class="rule card" {
                        legend { "Rule " (i + 1) }
                        p { label { "Words or phrases" br; input type="text" name={"words_" (i)} maxlength="2000"
                            value=(rule(i).map(|r| r.keywords.join(", ")).unwrap_or_default()); } }
                        p { label { "Reply" br; textarea name={"reply_" (i)} rows="2" maxlength="4000" {
                            (rule(i).map(|r| r.reply.clone()).unwrap_or_default()) } } }
                    }
                }
                h2 { "Button and quick-reply answers" }
                @for i in 0..e.postback_rows {
                    fieldset class="postback card" {
                        legend { "Button answer " (i + 1) }
                        p { label { "Payload" br; input type="text" name={"payload_" (i)} maxlength="1000"
                            value=(postbacks.get(i).map(|(k, _)| k.as_str()).unwrap_or_default()); } }
                        p { label { "Reply" br; textarea name={"payload_reply_" (i)} rows="2" maxlength="4000" {
                            (postbacks.get(i).map(|(_, v)| v.as_str()).unwrap_or_default()) } } }
                    }
                }
                h2 { "Fallback" }
                p { label { "The reply when no rule matches" br; textarea name="fallback" rows="2" maxlength="4000" {
                    (e.rules.fallback.clone().unwrap_or_default()) } } }
                h2 { "Try it" }
                p { label { "A customer's message" br; input type="text" name="try" maxlength="2000"
                    value=(e.tried.as_ref().map(|t| t.message.as_str()).unwrap_or_default()); } }
                @if let Some(t) = &e.tried {
                    p class="banner ok" id="tried" { "Answered by " (t.answered) ": " q { (t.reply) } }
                }
                button type="submit" name="action" value="try" id="try" { "Try it" }
                " "
                button type="submit" name="action" value="save" id="save" { "Save" }
                " " a href="/portal" { "Back to your Pages" }
            }
        },
    )
}

pub struct ClientPanel {
    pub client: Client,
    pub rows: Vec<PageRow>,
    /// The client's Pages' last 24 hours, added up.
    pub day: Timeline,
}

pub fn operator_view(
    user: &User,
    csrf: &str,
    panels: &[ClientPanel],
    stuck_after: i64,
    notice: Option<&str>,
) -> Response {
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
                            strong { (i.page_name.clone().unwrap_or_else(|| i.page_id.to_string())) } " (" (i.page_id) ") "
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

/// Choosing a new password: forced at the first sign-in with a one-time password (no current password asked,
/// it was just typed), voluntary otherwise.
pub fn password(csrf: &str, forced: bool, problem: Option<&str>) -> Response {
    html::page(
        StatusCode::OK,
        "Choose a password",
        html! {
            h1 { "Choose a password" }
            @if forced { p class="banner warn" id="must-change" { "You signed in with a one-time password. Choose your own to continue." } }
            @if let Some(p) = problem { p class="banner err" id="problem" { (p) } }
            form method="post" action="/portal/password" {
                input type="hidden" name="csrf" value=(csrf);
                @if !forced {
                    p { label { "Current password" br; input type="password" name="current" autocomplete="current-password" required; } }
                }
                p { label { "New password (12 characters or more)" br; input type="password" name="new" autocomplete="new-password" minlength="12" required; } }
                p { label { "New password again" br; input type="password" name="repeat" autocomplete="new-password" minlength="12" required; } }
                button type="submit" id="set-password" { "Save the password" }
            }
        },
    )
}

pub fn show_once(title: &str, lines: Markup) -> Response {
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

/// One exchange: what was said, by whom, when, and its state in plain words.
fn exchange(x: &super::conversations::Exchange) -> Markup {
    html! {
        @for line in &x.lines {
            div class={"line " (line.who.class())} data-state=(line.tone.name()) {
                p class="tight" {
                    strong { (line.who.label()) }
                    @if let Some(at) = line.at { " · " small { (when(at)) } }
                    @if !x.channel.is_empty() && line.who == super::conversations::Who::Customer { " · " small { (x.channel) } }
                }
                p class="said tight" { (line.text) }
                @if !line.state.is_empty() { p class={"state tight " (line.tone.class())} { (line.state) } }
            }
        }
    }
}

fn page_name(i: &Integration) -> String {
    i.page_name.clone().unwrap_or_else(|| i.page_id.to_string())
}

fn held_words(until: DateTime<Utc>) -> String {
    format!("A person is handling this conversation: the bot is silent until {}.", when(until))
}

/// A Page's recent conversations, newest activity first.
pub fn conversations(v: &super::conversations::ListView) -> Response {
    let i = &v.integration;
    html::page(
        StatusCode::OK,
        "Conversations",
        html! {
            h1 { "Conversations on " (page_name(i)) }
            p { "What your customers wrote most recently and what was answered, for as long as Switchboard keeps messages. Open one to read it all." }
            @if !v.kept {
                p class="banner warn" id="not-kept" { "This Switchboard keeps no messages (its inbox runs in memory), so there are no conversations to show. An operator can change that (inbox.mode = \"durable\")." }
            } @else if v.conversations.is_empty() {
                p id="no-conversations" { @if v.paged { "No older conversations." } @else { "No conversations yet." } }
            }
            @for c in &v.conversations {
                section class="card conversation" data-customer=(c.customer) {
                    h3 class="tight" {
                        a href={"/portal/pages/" (i.page_id) "/conversations/" (c.customer)} class="open" { "Customer " (c.customer) }
                        " " small { "(" (c.events) " message" @if c.events != 1 { "s" } ")" }
                    }
                    @if let Some(until) = c.held_until { p class="banner warn handled" { (held_words(until)) } }
                    (exchange(&c.last))
                }
            }
            p {
                @if let Some(older) = v.older { a href={"?before=" (older)} id="older" { "Older conversations" } " · " }
                @if v.paged { a href={"/portal/pages/" (i.page_id) "/conversations"} { "Newest" } " · " }
                a href="/portal" { "Back to your Pages" }
            }
        },
    )
}

/// One conversation, newest first, with "Hand back to the bot" while a person is handling it.
pub fn conversation(csrf: &str, v: &super::conversations::ConversationView) -> Response {
    let i = &v.integration;
    html::page(
        StatusCode::OK,
        "Conversation",
        html! {
            h1 { "Customer " (v.customer) }
            p { "On " (page_name(i)) ". Newest first." }
            @if let Some(notice) = v.notice { p class="banner ok" id="notice" { (notice) } }
            @if let Some(until) = v.held_until {
                div class="banner warn handled" {
                    (held_words(until))
                    form method="post" action={"/portal/pages/" (i.page_id) "/people/" (v.customer) "/release"} {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="back" value="conversation";
                        button type="submit" class="hand-back" { "Hand back to the bot" }
                    }
                }
            } @else {
                p class="banner ok" id="bot-handles" { "The bot answers this conversation." }
            }
            @if v.exchanges.is_empty() { p { "No older messages." } }
            @for x in &v.exchanges {
                section class="card exchange" data-id=(x.id) { (exchange(x)) }
            }
            p {
                @if let Some(older) = v.older { a href={"?before=" (older)} id="older" { "Older messages" } " · " }
                @if v.paged { a href={"/portal/pages/" (i.page_id) "/conversations/" (v.customer)} { "Newest" } " · " }
                a href={"/portal/pages/" (i.page_id) "/conversations"} { "All conversations" }
            }
        },
    )
}

fn pause_words(secs: u32) -> String {
    humantime::format_duration(std::time::Duration::from_secs(secs.into())).to_string()
}

/// A client's settings: the pause after a person answers; for operators also the bot and the send rate.
pub fn settings(csrf: &str, v: &super::settings::SettingsView) -> Response {
    let c = &v.client;
    let action = format!("/portal/clients/{}/settings", c.slug);
    let default_pause = pause_words(u32::try_from(v.default_pause.as_secs()).unwrap_or(u32::MAX));
    let status = if v.problem.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    html::page(
        status,
        "Settings",
        html! {
            h1 { "Settings of " (c.name) }
            @if let Some(p) = &v.problem { p class="banner err" id="problem" { (p) " Nothing was changed." } }
            @if v.saved { p class="banner ok" id="saved" { "Saved. Your Pages use it from their next message." } }
            section class="card" id="pause" {
                h2 class="tight" { "When a person answers" }
                p { "After someone at your business answers a customer in the Page Inbox or the Instagram Inbox, the bot stays silent in that conversation for "
                    strong { @if let Some(p) = v.pause { (pause_words(p)) } @else { (default_pause) " (the default)" } } "." }
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="what" value="pause";
                    label { "Stay silent for (like 30m, 2h or 1d; from 1m to 7d; or default) " br;
                        input type="text" name="pause" required value=(v.pause.map(pause_words).unwrap_or_else(|| "default".to_owned())); }
                    " " button type="submit" id="save-pause" { "Save" }
                }
            }
            @if v.operator {
                section class="card" id="responder" {
                    h2 class="tight" { "Which bot answers" }
                    p { "Now: " strong { @if v.relay { "the client's own bot at " (v.relay_url.clone().unwrap_or_default()) } @else { "the client's rules (edited by the client in the portal)" } } "." }
                    form method="post" action=(action) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="what" value="responder";
                        p { label { input type="radio" name="kind" value="rules" checked[!v.relay]; " The client's rules" } }
                        p { label { input type="radio" name="kind" value="relay" checked[v.relay]; " The client's own bot (relay)" } }
                        p { label { "Relay URL (https)" br; input type="url" class="wide" name="url" value=(v.relay_url.clone().unwrap_or_default()); } }
                        p { label { "Relay secret (16 characters or more; stored sealed and never shown again: type it each time you set the relay)" br;
                            input type="password" class="wide" name="secret" autocomplete="new-password"; } }
                        button type="submit" id="save-responder" { "Save" }
                    }
                }
                section class="card" id="rate" {
                    h2 class="tight" { "Send rate" }
                    p { "Each Page sends at most " strong { (v.rate.unwrap_or(v.default_rate)) } " calls per second"
                        @if v.rate.is_none() { " (the default)" } "." }
                    form method="post" action=(action) {
                        input type="hidden" name="csrf" value=(csrf);
                        input type="hidden" name="what" value="rate";
                        label { "Calls per second (1 to 1000, or default) " br;
                            input type="text" name="rate" required value=(v.rate.map(|r| r.to_string()).unwrap_or_else(|| "default".to_owned())); }
                        " " button type="submit" id="save-rate" { "Save" }
                    }
                }
            }
            p { a href="/portal" { "Back" } }
        },
    )
}
