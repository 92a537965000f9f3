//! Connecting and disconnecting Pages: "Connect with Facebook" starts Facebook Login for the signed-in client,
//! and a Page is disconnected after a confirmation page.

use maud::html;
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Principal, Signed, signed_in};
use super::chrome::page_name;
use super::{Button, PortalState, with_cookie};
use crate::domain::Actor;
use crate::http::cookies::cookie_value;
use crate::http::error::see_other;
use crate::http::{PageError, html, oauth};
use crate::store::{Integration, StoreError};

/// "Connect with Facebook": a client user starts Facebook Login, bound to this browser.
pub(super) async fn connect(signed: Option<Signed>, form: &Button, cookies: Option<&str>, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
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
    Ok(confirm_page(&g.session.csrf_token, &i))
}

pub(super) async fn disconnect(page: &str, signed: Option<Signed>, form: &Button, s: &PortalState) -> Page {
    let g = signed_in(signed)?.ready()?.form(&form.csrf)?;
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

fn confirm_page(csrf: &str, i: &Integration) -> Response {
    let name = page_name(i);
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
