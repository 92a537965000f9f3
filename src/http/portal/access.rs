//! Who is signed in, and the checks a handler composes: `signed_in(..)?.ready()?.form(&form)?.operator()?`.
//! Each check is written once here.

use warp::reply::Response;

use super::PortalState;
use super::session::SESSION_COOKIE;
use crate::domain::{Actor, AuditAction, ClientId, PageId, Role};
use crate::http::PageError;
use crate::http::cookies::cookie_value;
use crate::secrets::tokens::{hash, same};
use crate::store::{AuditEntry, Integration, Session, User};

/// A signed-in request: the session and its raw id (to sign out).
#[derive(Clone)]
pub(super) struct Signed {
    pub session: Session,
    pub id: String,
}

/// Whom a signed-in user acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Principal {
    /// Every client.
    Operator,
    /// This client only.
    Client(ClientId),
}

/// The session the request's cookie names, if it is live.
pub(super) async fn session(cookies: Option<&str>, s: &PortalState) -> Option<Signed> {
    let id = cookie_value(cookies, &s.cookie_name(SESSION_COOKIE))?.to_owned();
    match s.store.session(&hash(&id)).await {
        Ok(Some(session)) => Some(Signed { session, id }),
        _ => None,
    }
}

/// Signed in, or off to the sign-in page.
pub(super) fn signed_in(signed: Option<Signed>) -> Result<Signed, PageError> {
    signed.ok_or(PageError::SignInFirst)
}

impl Signed {
    pub fn user(&self) -> &User {
        &self.session.user
    }

    /// May use the portal now (not one who must first choose a password).
    pub fn ready(self) -> Result<Self, PageError> {
        if self.user().must_change_password { Err(PageError::ChooseAPasswordFirst) } else { Ok(self) }
    }

    /// A form POST carrying the session's CSRF token.
    pub fn form(self, csrf: &str) -> Result<Self, PageError> {
        if same(csrf, &self.session.csrf_token) { Ok(self) } else { Err(PageError::FormExpired) }
    }

    /// An operator.
    pub fn operator(self) -> Result<Self, PageError> {
        match self.principal()? {
            Principal::Operator => Ok(self),
            Principal::Client(_) => Err(PageError::Forbidden("Only operators can do this.")),
        }
    }

    /// Whom this user acts for. A client user without a client acts for nobody: refused, never an operator.
    pub fn principal(&self) -> Result<Principal, PageError> {
        match (self.user().role, self.user().client_id) {
            (Role::Operator, _) => Ok(Principal::Operator),
            (Role::Client, Some(client)) => Ok(Principal::Client(client)),
            (Role::Client, None) => Err(PageError::Forbidden(
                "This account is not linked to a business, so there is nothing to show. Ask an operator to fix it.",
            )),
        }
    }

    /// The integration of `page` if this user may act on it; a 404 otherwise (not 403, so other clients'
    /// page ids are not confirmed).
    pub async fn owned_page(&self, page: &str, s: &PortalState) -> Result<Integration, PageError> {
        let principal = self.principal()?;
        let not_found = || PageError::NotFound("No such Page.");
        let page = PageId::parse(page).map_err(|_| not_found())?;
        let i = s.store.integration_by_page(&page).await?.ok_or_else(not_found)?;
        match principal {
            Principal::Operator => Ok(i),
            Principal::Client(client) if client == i.client_id => Ok(i),
            Principal::Client(_) => Err(not_found()),
        }
    }

    /// This user, as audit rows name who acted.
    pub fn actor(&self) -> Actor {
        Actor::User(self.user().id)
    }

    /// Appends an audit row naming this user.
    pub async fn audit(&self, s: &PortalState, action: AuditAction, client_id: Option<ClientId>, detail: String) {
        s.store.record_audit(AuditEntry { actor: self.actor(), action, client_id, page_id: None, detail }).await;
    }
}

/// Keeps `Response` in this module's vocabulary for handlers that answer with a page.
pub(super) type Page = Result<Response, PageError>;
