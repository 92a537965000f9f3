//! The conversations a person at the business is handling on a Page, and handing one back to the bot.

use maud::html;
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Signed, signed_in};
use super::chrome::{page_name, when};
use super::{Notice, PortalState};
use crate::domain::AuditAction;
use crate::http::error::see_other;
use crate::http::{PageError, html};
use crate::store::Integration;

/// The conversations a person at the business is handling on a Page, each with "Hand back to the bot".
/// "Hand back to the bot": `back` names the page the button was on (`conversation`, or the list).
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct HandBack {
    csrf: String,
    back: String,
}

pub(super) async fn people(page: &str, q: &Notice, signed: Option<Signed>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?;
    let i = g.owned_page(page, s).await?;
    let holds = s.store.conversation_holds(i.page_id.as_str(), crate::clock::now().timestamp_millis()).await?;
    let notice = handed_back_notice(q);
    Ok(people_page(&g.session.csrf_token, &i, &holds, notice))
}

/// What the page says after "Hand back to the bot".
pub(super) fn handed_back_notice(q: &Notice) -> Option<&'static str> {
    match q.notice.as_deref() {
        Some("handed-back") => Some("The conversation is the bot's again."),
        Some("handed-back-here") => Some(
            "The conversation is the bot's again here, but Facebook did not hand it back: if it was passed to the \
             Page Inbox, mark it done there, or the bot sees that customer's messages only while the inbox has them.",
        ),
        _ => None,
    }
}

/// Hands a conversation back to the bot before its pause ends: the bot answers that customer's next message.
pub(super) async fn hand_back(
    page: &str,
    person: &str,
    signed: Option<Signed>,
    form: &HandBack,
    s: &PortalState,
) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
    let i = g.owned_page(page, s).await?;
    let person = person_id(person)?;
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
    Ok(see_other(&match form.back.as_str() {
        "conversation" => format!("/portal/pages/{}/conversations/{person}?notice={notice}", i.page_id),
        _ => format!("/portal/pages/{}/people?notice={notice}", i.page_id),
    }))
}

/// A customer id from a path: digits only (a PSID or IGSID), else there is no such conversation.
pub(super) fn person_id(raw: &str) -> Result<&str, PageError> {
    if raw.is_empty() || raw.len() > 32 || !raw.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PageError::NotFound("No such conversation."));
    }
    Ok(raw)
}

/// The conversations a person at the business is handling on a Page.
fn people_page(csrf: &str, i: &Integration, holds: &[(String, i64)], notice: Option<&str>) -> Response {
    let name = page_name(i);
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
