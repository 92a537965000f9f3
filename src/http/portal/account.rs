//! Signing in and out, and choosing a password.

use secrecy::SecretString;
use warp::http::StatusCode;
use warp::reply::Response;

use super::access::{Page, Signed, signed_in};
use super::session::{DEVICE_COOKIE, DEVICE_TTL_SECS, LOGIN_COOKIE, NotNow, SESSION_COOKIE};
use super::{Form, PortalState, views, with_cookie};
use crate::domain::{AuditAction, Email};
use crate::http::PageError;
use crate::http::cookies::cookie_value;
use crate::http::error::see_other;
use crate::http::server::ClientAddr;
use crate::secrets::password;
use crate::secrets::tokens::{hash, random_token, same};

/// The sign-in form, with a fresh token in its cookie (the form's CSRF check).
pub(super) fn login_page(s: &PortalState) -> Response {
    let csrf = random_token();
    with_cookie(views::login(&csrf, None, StatusCode::OK), &s.set_cookie(LOGIN_COOKIE, &csrf, 3600))
}

pub(super) async fn login(cookies: Option<&str>, client: Option<ClientAddr>, form: Form, s: PortalState) -> Response {
    let fresh = random_token();
    let again = |problem: PageError| {
        let page = views::login(&fresh, Some(&problem.to_string()), problem.status());
        with_cookie(page, &s.set_cookie(LOGIN_COOKIE, &fresh, 3600))
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if cookie_value(cookies, &s.cookie_name(LOGIN_COOKIE)).is_none_or(|t| !same(t, sent)) {
        return again(PageError::SignInFormExpired);
    }
    let email = Email::parse(form.get("email").map(String::as_str).unwrap_or_default()).ok();
    // What arrives is counted under a bounded key: a parsed e-mail, or one key for all that are not e-mails.
    let account = email.as_ref().map_or_else(String::new, |e| e.as_str().to_lowercase());
    // The client's address (what a trusted proxy forwarded), counted per IPv4 address or IPv6 /64.
    let address = client.map_or_else(|| "unknown".to_owned(), |c| c.key().to_string());
    let device = cookie_value(cookies, &s.cookie_name(DEVICE_COOKIE));
    let user = match &email {
        Some(e) => s.store.user_by_email(e).await.unwrap_or(None),
        None => None,
    };
    // Verify against a real hash even for unknown e-mails, so timing does not reveal which exist.
    let stored = match &user {
        Some(u) => u.password_hash.clone(),
        None => dummy_hash().await,
    };
    let typed = SecretString::from(form.get("password").cloned().unwrap_or_default());
    let ok = match s.throttle.check(&account, &address, device, typed, stored).await {
        Ok(ok) => ok,
        Err(NotNow::Wait(wait)) => return again(PageError::TooManyAttempts(wait)),
        Err(NotNow::Busy) => return again(PageError::TooManyAttempts(1)),
        Err(NotNow::Store(e)) => return PageError::from(e).page(),
    };
    let Some(user) = user.filter(|_| ok) else {
        return again(PageError::BadCredentials);
    };
    let id = random_token();
    let expires = crate::clock::now() + chrono::Duration::from_std(s.session_ttl).unwrap_or_default();
    if let Err(e) = s.store.create_session(&hash(&id), user.id, &random_token(), expires).await {
        return PageError::from(e).page();
    }
    let next = if user.must_change_password { "/portal/password" } else { "/portal" };
    let response = with_cookie(see_other(next), &s.set_cookie(SESSION_COOKIE, &id, s.session_ttl.as_secs()));
    // This browser now knows the account: its attempts are counted on their own from now on.
    with_cookie(response, &s.set_cookie(DEVICE_COOKIE, &s.throttle.device_cookie(&account), DEVICE_TTL_SECS))
}

/// An argon2id hash of a random string (made once), so a sign-in with an unknown e-mail costs as much as a
/// real one.
async fn dummy_hash() -> String {
    static DUMMY: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    DUMMY
        .get_or_init(|| async { password::hash(SecretString::from(random_token())).await.unwrap_or_default() })
        .await
        .clone()
}

/// Signs out; a sign-out without the session's CSRF token changes nothing (no forced sign-outs).
pub(super) async fn logout(signed: Option<Signed>, form: &Form, s: &PortalState) -> Page {
    let g = signed_in(signed)?.form(form)?;
    let _ = s.store.delete_session(&hash(&g.id)).await;
    Ok(with_cookie(see_other("/portal/login"), &s.set_cookie(SESSION_COOKIE, "", 0)))
}

pub(super) fn password_page(signed: Option<Signed>) -> Page {
    let g = signed_in(signed)?;
    Ok(views::password(&g.session.csrf_token, g.user().must_change_password, None))
}

/// Sets the user's own password: the new one twice, and the current one unless they must change it now
/// (they just signed in with it). Other sessions of the user end.
pub(super) async fn change_password(signed: Option<Signed>, form: &Form, s: &PortalState) -> Page {
    let g = signed_in(signed)?.form(form)?;
    let forced = g.user().must_change_password;
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let again = |problem: PageError| {
        let mut page = views::password(&g.session.csrf_token, forced, Some(&problem.to_string()));
        *page.status_mut() = problem.status();
        Ok(page)
    };
    if !forced {
        let current = SecretString::from(field("current"));
        if !password::verify(current, g.user().password_hash.clone()).await.unwrap_or(false) {
            return again(PageError::BadRequest("The current password is not right.".to_owned()));
        }
    }
    let (new, repeated) = (field("new"), field("repeat"));
    if new != repeated {
        return again(PageError::BadRequest("The two new passwords are not the same.".to_owned()));
    }
    let new = SecretString::from(new);
    if let Err(e) = password::check_policy(&new) {
        return again(PageError::BadRequest(e.to_string()));
    }
    let hash_of_new = password::hash(new).await.map_err(|e| PageError::Internal(e.to_string()))?;
    s.store.set_password(g.user().id, &hash_of_new, &hash(&g.id)).await?;
    g.audit(s, AuditAction::UserPasswordChanged, g.user().client_id, g.user().email.to_string()).await;
    Ok(see_other("/portal?notice=password-changed"))
}
