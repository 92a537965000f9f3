//! The home page (a client's Pages, or every tenant for an operator), and connecting and disconnecting Pages.

use super::access::{Page, Principal, Signed, signed_in};
use super::charts::Timeline;
use super::views::{self, ClientPanel, PageRow};
use super::{Form, PortalState, with_cookie};
use crate::cluster::shared_figures;
use crate::domain::{Actor, AuditAction};
use crate::http::PageError;
use crate::http::cookies::cookie_value;
use crate::http::error::see_other;
use crate::http::oauth;
use crate::onboarding::Outcome;
use crate::store::{Integration, StoreError};

/// The portal's charts span a day in 15-minute slots.
const DAY_SECS: i64 = 86_400;
const SLOT_SECS: i64 = 900;
const SLOTS: usize = 96;

pub(super) async fn home(signed: Option<Signed>, q: &Form, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let principal = g.principal()?;
    let user = g.user();
    let csrf = &g.session.csrf_token;
    let notice = match q.get("notice").map(String::as_str) {
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
            let outcome = match q.get("result").filter(|id| crate::secrets::tokens::is_token(id)) {
                Some(id) => s
                    .store
                    .oauth_outcome(id)
                    .await?
                    .filter(|o| o.client_id == client_id)
                    .and_then(|o| serde_json::from_str::<Outcome>(&o.outcome).ok()),
                None => None,
            };
            let rows: Vec<PageRow> = integrations.into_iter().filter(|i| i.client_id == client_id).map(row).collect();
            Ok(views::client_view(user, csrf, &client, &rows, stuck_after(s), outcome.as_ref(), notice))
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
            Ok(views::operator_view(user, csrf, &panels, stuck_after(s), notice))
        }
    }
}

/// "Connect with Facebook": a client user starts Facebook Login, bound to this browser.
pub(super) async fn connect(signed: Option<Signed>, form: &Form, cookies: Option<&str>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(form)?;
    let Principal::Client(client_id) = g.principal()? else {
        return Err(PageError::Forbidden("Operators connect Pages by sending the client an onboarding link."));
    };
    let browser = cookie_value(cookies, oauth::browser_cookie_name(&s.onboarding));
    let begun = s.onboarding.begin(client_id, Some(g.user().id), false, browser, None).await?;
    Ok(with_cookie(see_other(&begun.dialog), &oauth::browser_cookie(&s.onboarding, &begun.browser)))
}

pub(super) async fn confirm_disconnect(page: &str, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    Ok(views::confirm_disconnect(&g.session.csrf_token, &i))
}

pub(super) async fn disconnect(page: &str, signed: Option<Signed>, form: &Form, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(form)?;
    let i = g.owned_page(page, s).await?;
    // Only if it still belongs to the client it was checked against.
    match s
        .onboarding
        .disconnect(&i.page_id, Some(i.client_id), Actor::User(g.user().id), "disconnected in the portal")
        .await
    {
        Ok(_) => Ok(see_other("/portal?notice=disconnected")),
        Err(StoreError::Conflict(m) | StoreError::NotFound(m)) => Err(PageError::Conflict(m)),
        Err(e) => Err(e.into()),
    }
}

/// The conversations a person at the business is handling on a Page, each with "Hand back to the bot".
pub(super) async fn people(page: &str, q: &Form, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let holds = s.store.conversation_holds(i.page_id.as_str(), crate::clock::now().timestamp_millis()).await?;
    let notice = handed_back_notice(q);
    Ok(views::people(&g.session.csrf_token, &i, &holds, notice))
}

/// What the page says after "Hand back to the bot".
pub(super) fn handed_back_notice(q: &Form) -> Option<&'static str> {
    match q.get("notice").map(String::as_str) {
        Some("handed-back") => Some("The conversation is the bot's again."),
        Some("handed-back-here") => Some(
            "The conversation is the bot's again here, but Facebook did not hand it back: if it was passed to the \
             Page Inbox, mark it done there, or the bot sees that customer's messages only while the inbox has them.",
        ),
        _ => None,
    }
}

/// Hands a conversation back to the bot before its pause ends: the bot answers that customer's next message.
pub(super) async fn hand_back(page: &str, person: &str, signed: Option<Signed>, form: &Form, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(form)?;
    let i = g.owned_page(page, s).await?;
    let person = super::conversations::person_id(person)?;
    s.store.release_conversation(i.page_id.as_str(), person).await?;
    s.clients.page_changed(&i.page_id).await;
    // A conversation passed to the Page Inbox reaches the bot only as standby until it comes back: take it back
    // at Meta too (for one that was never passed, Meta has nothing to move).
    let (notice, detail) = match s.onboarding.take_thread_back(&i.page_id, person).await {
        Ok(()) => ("handed-back", format!("page {}, taken back at Meta", i.page_id)),
        Err(why) => ("handed-back-here", format!("page {}, not taken back at Meta: {why}", i.page_id)),
    };
    g.audit(s, AuditAction::ConversationHandedBack, Some(i.client_id), detail).await;
    // Back where the button was: the conversation's own page, or the list of conversations a person handles.
    Ok(see_other(&match form.get("back").map(String::as_str) {
        Some("conversation") => format!("/portal/pages/{}/conversations/{person}?notice={notice}", i.page_id),
        _ => format!("/portal/pages/{}/people?notice={notice}", i.page_id),
    }))
}

/// The age (seconds) at which a Page counts as stuck: the dashed line of the charts.
fn stuck_after(s: &PortalState) -> i64 {
    i64::try_from(s.stuck_after.as_secs()).unwrap_or(60)
}

/// `GET /portal/pages/{page}/health`: the Page's last 24 hours and last 30 days, with its status in words.
pub(super) async fn health(page: &str, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let now = crate::clock::now().timestamp();
    let minutes = s.store.history(Some(i.page_id.as_str()), 60, now - DAY_SECS, SLOT_SECS).await?;
    let hours = s.store.history(Some(i.page_id.as_str()), 3600, now - 30 * DAY_SECS, 6 * 3600).await?;
    let day = Timeline::new(&minutes.iter().collect::<Vec<_>>(), now, SLOT_SECS, SLOTS, "15 min", "24 h");
    let month = Timeline::new(&hours.iter().collect::<Vec<_>>(), now, 6 * 3600, 120, "6 h", "30 days");
    Ok(views::health(&i, &day, &month, stuck_after(s)))
}
