//! Signing in and out, and choosing a password.

use secrecy::{ExposeSecret as _, SecretString};
use warp::http::StatusCode;
use warp::reply::Response;

use maud::html;

use super::access::{Page, Signed, signed_in};
use super::session::{DEVICE_COOKIE, DEVICE_TTL_SECS, LOGIN_COOKIE, NotNow, SESSION_COOKIE};
use super::{Button, PortalState, with_cookie};
use crate::domain::{AuditAction, Email};
use crate::http::PageError;
use crate::http::cookies::cookie_value;
use crate::http::error::see_other;
use crate::http::html;
use crate::http::server::ClientAddr;
use crate::secrets::password;
use crate::secrets::tokens::{hash, random_token, same};

/// The sign-in form, with a fresh token in its cookie (the form's CSRF check).
pub(super) fn login_page(s: &PortalState) -> Response {
    let csrf = random_token();
    with_cookie(login_form(&csrf, None, StatusCode::OK), &s.set_cookie(LOGIN_COOKIE, &csrf, 3600))
}

/// The sign-in form.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SignIn {
    csrf: String,
    email: String,
    password: Option<SecretString>,
}

/// Choosing a password: the current one (unless it must be changed now), and the new one twice.
#[derive(Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct NewPassword {
    csrf: String,
    current: Option<SecretString>,
    new: Option<SecretString>,
    repeat: Option<SecretString>,
}

/// An empty secret for a field the form did not send.
fn typed(secret: Option<SecretString>) -> SecretString {
    secret.unwrap_or_else(|| SecretString::from(String::new()))
}

pub(super) async fn login(cookies: Option<&str>, client: Option<ClientAddr>, form: SignIn, s: PortalState) -> Response {
    let fresh = random_token();
    let again = |problem: PageError| {
        let page = login_form(&fresh, Some(&problem.to_string()), problem.status());
        with_cookie(page, &s.set_cookie(LOGIN_COOKIE, &fresh, 3600))
    };
    if cookie_value(cookies, &s.cookie_name(LOGIN_COOKIE)).is_none_or(|t| !same(t, &form.csrf)) {
        return again(PageError::SignInFormExpired);
    }
    let email = Email::parse(&form.email).ok();
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
    let ok = match s.throttle.check(&account, &address, device, typed(form.password), stored).await {
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
pub(super) async fn logout(signed: Option<Signed>, form: &Button, s: &PortalState) -> Page {
    let g = signed_in(signed)?.form(&form.csrf)?;
    let _ = s.store.delete_session(&hash(&g.id)).await;
    Ok(with_cookie(see_other("/portal/login"), &s.set_cookie(SESSION_COOKIE, "", 0)))
}

pub(super) fn password_page(signed: Option<Signed>) -> Page {
    let g = signed_in(signed)?;
    Ok(password_form(&g.session.csrf_token, g.user().must_change_password, None))
}

/// Sets the user's own password: the new one twice, and the current one unless they must change it now
/// (they just signed in with it). Other sessions of the user end.
pub(super) async fn change_password(signed: Option<Signed>, form: NewPassword, s: &PortalState) -> Page {
    let g = signed_in(signed)?.form(&form.csrf)?;
    let forced = g.user().must_change_password;
    let again = |problem: PageError| {
        let mut page = password_form(&g.session.csrf_token, forced, Some(&problem.to_string()));
        *page.status_mut() = problem.status();
        Ok(page)
    };
    if !forced && !password::verify(typed(form.current), g.user().password_hash.clone()).await.unwrap_or(false) {
        return again(PageError::BadRequest("The current password is not right.".to_owned()));
    }
    let (new, repeated) = (typed(form.new), typed(form.repeat));
    if !same(new.expose_secret(), repeated.expose_secret()) {
        return again(PageError::BadRequest("The two new passwords are not the same.".to_owned()));
    }
    if let Err(e) = password::check_policy(&new) {
        return again(PageError::BadRequest(e.to_string()));
    }
    let hash_of_new = password::hash(new).await.map_err(|e| PageError::Internal(e.to_string()))?;
    s.store.set_password(g.user().id, &hash_of_new, &hash(&g.id)).await?;
    g.audit(s, AuditAction::UserPasswordChanged, g.user().client_id, g.user().email.to_string()).await;
    Ok(see_other("/portal?notice=password-changed"))
}

fn login_form(csrf: &str, problem: Option<&str>, status: StatusCode) -> Response {
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

/// Choosing a new password: forced at the first sign-in with a one-time password (no current password asked,
/// it was just typed), voluntary otherwise.
fn password_form(csrf: &str, forced: bool, problem: Option<&str>) -> Response {
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
