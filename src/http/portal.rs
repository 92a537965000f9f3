//! The client portal: sign-in, a client's Pages with their status and "Connect with Facebook", the
//! operator's view of every tenant. Every handler checks on the server that the signed-in user may see
//! and act on what it names: another client's page is a 404, operator pages are a 403 for client users, and
//! a client user whose account names no client is refused everywhere (fail closed), whatever the database
//! holds. A user invited with a one-time password must choose their own before anything else.

mod figures;
pub mod session;
mod views;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use maud::html;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use switchboard_actors::Router;
use warp::http::{StatusCode, Uri};
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use self::session::{DEVICE_COOKIE, DEVICE_TTL_SECS, LOGIN_COOKIE, LoginThrottle, SESSION_COOKIE};
use self::views::{ClientPanel, PageRow};
use crate::domain::{Actor, ClientSlug, Email, PageId, Role};
use crate::http::cookies::{cookie, cookie_name, cookie_value};
use crate::http::server::ClientAddr;
use crate::http::{html, oauth};
use crate::onboarding::{Onboarding, Outcome};
use crate::secrets::tokens::{hash, random_token, same};
use crate::store::{AuditEntry, Integration, NewUser, Session, Store, StoreError, User};

type Form = HashMap<String, String>;

/// What the portal needs.
#[derive(Clone)]
pub struct PortalState {
    pub store: Store,
    pub onboarding: Onboarding,
    pub router: Router,
    pub metrics: PrometheusHandle,
    /// Mark cookies Secure and `__Host-` (the public URL is https).
    pub secure: bool,
    pub throttle: Arc<LoginThrottle>,
    pub session_ttl: Duration,
}

impl PortalState {
    fn cookie_name(&self, name: &'static str) -> String {
        cookie_name(name, self.secure)
    }

    fn set_cookie(&self, name: &'static str, value: &str, max_age: u64) -> String {
        cookie(&self.cookie_name(name), value, max_age, self.secure)
    }
}

/// A signed-in request: the session and its raw id (to sign out).
#[derive(Clone)]
struct Signed {
    session: Session,
    id: String,
}

/// Whom a signed-in user acts for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Principal {
    /// Every client.
    Operator,
    /// This client only.
    Client(i64),
}

impl Signed {
    fn user(&self) -> &User {
        &self.session.user
    }

    /// Whom this user acts for. A client user without a client acts for nobody: refused, never an operator.
    // The error is the answer to send (a 403 page), on a cold path: boxing it buys nothing.
    #[allow(clippy::result_large_err)]
    fn principal(&self) -> Result<Principal, Response> {
        match (self.user().role, self.user().client_id) {
            (Role::Operator, _) => Ok(Principal::Operator),
            (Role::Client, Some(client)) => Ok(Principal::Client(client)),
            (Role::Client, None) => Err(forbidden(
                "This account is not linked to a business, so there is nothing to show. Ask an operator to fix it.",
            )),
        }
    }

    fn csrf_ok(&self, form: &Form) -> bool {
        form.get("csrf").is_some_and(|t| same(t, &self.session.csrf_token))
    }
}

/// A signed-in user who may use the portal now (not one who must first choose a password).
#[allow(clippy::result_large_err)]
fn ready(signed: Option<Signed>) -> Result<Signed, Response> {
    let g = signed.ok_or_else(|| see_other("/portal/login"))?;
    if g.user().must_change_password {
        return Err(see_other("/portal/password"));
    }
    Ok(g)
}

/// A form POST by a ready user, with the session's CSRF token.
#[allow(clippy::result_large_err)]
fn checked(signed: Option<Signed>, form: &Form) -> Result<Signed, Response> {
    let g = ready(signed)?;
    if !g.csrf_ok(form) {
        return Err(forbidden("This form has expired. Go back, reload the page and try again."));
    }
    Ok(g)
}

/// A form POST by an operator.
#[allow(clippy::result_large_err)]
fn operator(signed: Option<Signed>, form: &Form) -> Result<Signed, Response> {
    let g = checked(signed, form)?;
    match g.principal()? {
        Principal::Operator => Ok(g),
        Principal::Client(_) => Err(forbidden("Only operators can do this.")),
    }
}

pub fn routes(
    state: PortalState,
    bodies: Arc<crate::http::BodyBudget>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let with = warp::any().map(move || state.clone());
    let cookies = warp::header::optional::<String>("cookie");
    let signed = cookies.and(with.clone()).then(|cookies: Option<String>, s: PortalState| async move {
        let Some(id) = cookie_value(cookies.as_deref(), &s.cookie_name(SESSION_COOKIE)).map(str::to_owned) else {
            return (None, s);
        };
        match s.store.session(&hash(&id)).await {
            Ok(Some(session)) => (Some(Signed { session, id }), s),
            _ => (None, s),
        }
    });
    let signed = signed.untuple_one();
    let form = crate::http::body::form(16 * 1024, bodies);

    let login_page = warp::path!("portal" / "login").and(warp::get()).and(with.clone()).map(|s: PortalState| {
        let csrf = random_token();
        with_cookie(views::login(&csrf, None, StatusCode::OK), &s.set_cookie(LOGIN_COOKIE, &csrf, 3600))
    });
    let login = warp::path!("portal" / "login")
        .and(warp::post())
        .and(cookies)
        .and(warp::ext::optional::<ClientAddr>())
        .and(form.clone())
        .and(with.clone())
        .then(|cookies: Option<String>, client: Option<ClientAddr>, form: Form, s: PortalState| async move {
            login(cookies.as_deref(), client, form, s).await
        });
    let logout = warp::path!("portal" / "logout").and(warp::post()).and(signed.clone()).and(form.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            match signed {
                // A sign-out without the session's CSRF token changes nothing (no forced sign-outs).
                Some(g) if !g.csrf_ok(&form) => {
                    forbidden("This form has expired. Go back, reload the page and try again.")
                }
                Some(g) => {
                    let _ = s.store.delete_session(&hash(&g.id)).await;
                    with_cookie(see_other("/portal/login"), &s.set_cookie(SESSION_COOKIE, "", 0))
                }
                None => see_other("/portal/login"),
            }
        },
    );
    let password_page = warp::path!("portal" / "password").and(warp::get()).and(signed.clone()).map(
        |signed: Option<Signed>, _s: PortalState| match signed {
            None => see_other("/portal/login"),
            Some(g) => views::password(&g.session.csrf_token, g.user().must_change_password, None),
        },
    );
    let password = warp::path!("portal" / "password").and(warp::post()).and(signed.clone()).and(form.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            match signed {
                None => see_other("/portal/login"),
                Some(g) if !g.csrf_ok(&form) => {
                    forbidden("This form has expired. Go back, reload the page and try again.")
                }
                Some(g) => change_password(&g, &form, &s).await,
            }
        },
    );
    let home = warp::path!("portal").and(warp::get()).and(warp::query::<Form>()).and(signed.clone()).then(
        |q: Form, signed: Option<Signed>, s: PortalState| async move {
            match ready(signed) {
                Err(response) => response,
                Ok(g) => home(&g, &q, &s).await,
            }
        },
    );
    let connect =
        warp::path!("portal" / "connect").and(warp::post()).and(signed.clone()).and(form.clone()).and(cookies).then(
            |signed: Option<Signed>, s: PortalState, form: Form, cookies: Option<String>| async move {
                let g = match checked(signed, &form) {
                    Ok(g) => g,
                    Err(response) => return response,
                };
                let client_id = match g.principal() {
                    Ok(Principal::Client(id)) => id,
                    Ok(Principal::Operator) => {
                        return forbidden("Operators connect Pages by sending the client an onboarding link.");
                    }
                    Err(response) => return response,
                };
                let browser = cookie_value(cookies.as_deref(), oauth::browser_cookie_name(&s.onboarding));
                match s.onboarding.begin(client_id, Some(g.user().id), false, browser, None).await {
                    Ok(begun) => {
                        with_cookie(see_other(&begun.dialog), &oauth::browser_cookie(&s.onboarding, &begun.browser))
                    }
                    Err(e) => unavailable(e),
                }
            },
        );
    let confirm = warp::path!("portal" / "pages" / String / "disconnect").and(warp::get()).and(signed.clone()).then(
        |page: String, signed: Option<Signed>, s: PortalState| async move {
            let g = match ready(signed) {
                Ok(g) => g,
                Err(response) => return response,
            };
            match owned_page(&g, &page, &s).await {
                Ok(i) => views::confirm_disconnect(&g.session.csrf_token, &i),
                Err(response) => response,
            }
        },
    );
    let disconnect = warp::path!("portal" / "pages" / String / "disconnect")
        .and(warp::post())
        .and(signed.clone())
        .and(form.clone())
        .then(|page: String, signed: Option<Signed>, s: PortalState, form: Form| async move {
            let g = match checked(signed, &form) {
                Ok(g) => g,
                Err(response) => return response,
            };
            let i = match owned_page(&g, &page, &s).await {
                Ok(i) => i,
                Err(response) => return response,
            };
            let who = Actor::User(g.user().id);
            // Only if it still belongs to the client it was checked against.
            match s.onboarding.disconnect(&i.page_id, Some(i.client_id), who, "disconnected in the portal").await {
                Ok(_) => see_other("/portal?notice=disconnected"),
                Err(StoreError::Conflict(m) | StoreError::NotFound(m)) => html::error(StatusCode::CONFLICT, &m),
                Err(e) => unavailable(e),
            }
        });
    let add_client = warp::path!("portal" / "clients").and(warp::post()).and(signed.clone()).and(form.clone()).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            let g = match operator(signed, &form) {
                Ok(g) => g,
                Err(response) => return response,
            };
            let name = form.get("name").map(|n| n.trim()).unwrap_or_default();
            let slug = match ClientSlug::from_name(name) {
                Ok(slug) if !name.is_empty() && name.chars().count() <= 200 => slug,
                _ => {
                    return html::error(
                        StatusCode::BAD_REQUEST,
                        "A client needs a name of 1 to 200 characters with letters or digits.",
                    );
                }
            };
            match s.store.create_client(name, &slug).await {
                Ok(c) => {
                    audit(&s, &g, "client.created", Some(c.id), format!("{} ({})", c.name, c.slug)).await;
                    see_other("/portal?notice=client-added")
                }
                Err(StoreError::Conflict(m)) => html::error(StatusCode::CONFLICT, &m),
                Err(e) => unavailable(e),
            }
        },
    );
    let link = warp::path!("portal" / "clients" / String / "link")
        .and(warp::post())
        .and(signed.clone())
        .and(form.clone())
        .then(|slug: String, signed: Option<Signed>, s: PortalState, form: Form| async move {
            let g = match operator(signed, &form) {
                Ok(g) => g,
                Err(response) => return response,
            };
            let client = match ClientSlug::parse(&slug) {
                Ok(slug) => s.store.client_by_slug(&slug).await,
                Err(_) => Ok(None),
            };
            match client {
                Ok(Some(c)) => {
                    let link = s.onboarding.onboard_link(&c.slug, Duration::from_secs(86_400));
                    audit(&s, &g, "client.onboard_link", Some(c.id), "valid for 24h".to_owned()).await;
                    views::show_once(
                        "Onboarding link",
                        html! {
                            p { "Send this link to " (c.name) ". It works for 24 hours." }
                            p { input type="text" class="wide" readonly value=(link) id="link"; }
                        },
                    )
                }
                Ok(None) => html::error(StatusCode::NOT_FOUND, "No such client."),
                Err(e) => unavailable(e),
            }
        });
    let invite = warp::path!("portal" / "users").and(warp::post()).and(signed).and(form).then(
        |signed: Option<Signed>, s: PortalState, form: Form| async move {
            let g = match operator(signed, &form) {
                Ok(g) => g,
                Err(response) => return response,
            };
            invite(&g, &form, &s).await
        },
    );

    login_page
        .or(login)
        .unify()
        .or(logout)
        .unify()
        .or(password_page)
        .unify()
        .or(password)
        .unify()
        .or(home)
        .unify()
        .or(connect)
        .unify()
        .or(confirm)
        .unify()
        .or(disconnect)
        .unify()
        .or(add_client)
        .unify()
        .or(link)
        .unify()
        .or(invite)
        .unify()
}

async fn login(cookies: Option<&str>, client: Option<ClientAddr>, form: Form, s: PortalState) -> Response {
    let fresh = random_token();
    let again = |problem: &str, status| {
        with_cookie(views::login(&fresh, Some(problem), status), &s.set_cookie(LOGIN_COOKIE, &fresh, 3600))
    };
    let sent = form.get("csrf").map(String::as_str).unwrap_or_default();
    if cookie_value(cookies, &s.cookie_name(LOGIN_COOKIE)).is_none_or(|t| !same(t, sent)) {
        return again("The sign-in form expired. Please try again.", StatusCode::FORBIDDEN);
    }
    let email = Email::parse(form.get("email").map(String::as_str).unwrap_or_default()).ok();
    // What arrives is counted under a bounded key: a parsed e-mail, or one key for all that are not e-mails.
    let account = email.as_ref().map_or_else(String::new, |e| e.as_str().to_lowercase());
    let password = form.get("password").cloned().unwrap_or_default();
    // The client's address (what a trusted proxy forwarded), counted per IPv4 address or IPv6 /64.
    let address = client.map_or_else(|| "unknown".to_owned(), |c| c.key().to_string());
    let device = cookie_value(cookies, &s.cookie_name(DEVICE_COOKIE));
    if let Err(wait) = s.throttle.attempt(&account, &address, device) {
        return again(
            &format!("Too many sign-in attempts. Please wait {wait} seconds and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let user = match &email {
        Some(e) => s.store.user_by_email(e).await.unwrap_or(None),
        None => None,
    };
    // Verify against a real hash even for unknown e-mails, so timing does not reveal which exist.
    let stored = match &user {
        Some(u) => u.password_hash.clone(),
        None => dummy_hash().await,
    };
    let ok = crate::secrets::password::verify(SecretString::from(password), stored).await.unwrap_or(false);
    let Some(user) = user.filter(|_| ok) else {
        return again("The e-mail or the password is not right.", StatusCode::UNAUTHORIZED);
    };
    let id = random_token();
    let expires = crate::clock::now() + chrono::Duration::from_std(s.session_ttl).unwrap_or_default();
    if let Err(e) = s.store.create_session(&hash(&id), user.id, &random_token(), expires).await {
        return unavailable(e);
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
        .get_or_init(|| async {
            crate::secrets::password::hash(SecretString::from(random_token())).await.unwrap_or_default()
        })
        .await
        .clone()
}

/// Sets the user's own password: the new one twice, and the current one unless they must change it now
/// (they just signed in with it). Other sessions of the user end.
async fn change_password(g: &Signed, form: &Form, s: &PortalState) -> Response {
    let forced = g.user().must_change_password;
    let field = |name: &str| form.get(name).cloned().unwrap_or_default();
    let again = |problem: &str| {
        let mut page = views::password(&g.session.csrf_token, forced, Some(problem));
        *page.status_mut() = StatusCode::BAD_REQUEST;
        page
    };
    if !forced {
        let current = SecretString::from(field("current"));
        if !crate::secrets::password::verify(current, g.user().password_hash.clone()).await.unwrap_or(false) {
            return again("The current password is not right.");
        }
    }
    let (new, repeated) = (field("new"), field("repeat"));
    if new != repeated {
        return again("The two new passwords are not the same.");
    }
    let new = SecretString::from(new);
    if let Err(e) = crate::secrets::password::check_policy(&new) {
        return again(&e.to_string());
    }
    let hash_of_new = match crate::secrets::password::hash(new).await {
        Ok(h) => h,
        Err(e) => return html::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    if let Err(e) = s.store.set_password(g.user().id, &hash_of_new, &hash(&g.id)).await {
        return unavailable(e);
    }
    audit(s, g, "user.password_changed", g.user().client_id, g.user().email.to_string()).await;
    see_other("/portal?notice=password-changed")
}

async fn home(g: &Signed, q: &Form, s: &PortalState) -> Response {
    match g.principal() {
        Ok(principal) => home_of(g, principal, q, s).await.unwrap_or_else(unavailable),
        Err(response) => response,
    }
}

async fn home_of(g: &Signed, principal: Principal, q: &Form, s: &PortalState) -> Result<Response, StoreError> {
    let user = g.user();
    let csrf = &g.session.csrf_token;
    let notice = match q.get("notice").map(String::as_str) {
        Some("disconnected") => Some("The Page was disconnected."),
        Some("client-added") => Some("The client was added."),
        Some("password-changed") => Some("Your password was changed."),
        _ => None,
    };
    let integrations = s.store.list_integrations().await?;
    let figures = figures::parse(&s.metrics.render());
    let row = |i: Integration| PageRow {
        stats: s.router.stats(&i.page_id),
        figures: figures.get(i.page_id.as_str()).copied().unwrap_or_default(),
        active: s.router.is_active(&i.page_id),
        integration: i,
    };
    match principal {
        Principal::Client(client_id) => {
            let client =
                s.store.client_by_id(client_id).await?.ok_or_else(|| StoreError::NotFound("client".to_owned()))?;
            let outcome = match q.get("result").and_then(|h| hex::decode(h).ok()) {
                Some(hash) => s
                    .store
                    .oauth_outcome(&hash)
                    .await?
                    .filter(|o| o.client_id == client_id)
                    .and_then(|o| serde_json::from_str::<Outcome>(&o.outcome).ok()),
                None => None,
            };
            let rows: Vec<PageRow> = integrations.into_iter().filter(|i| i.client_id == client_id).map(row).collect();
            Ok(views::client_view(user, csrf, &client, &rows, outcome.as_ref(), notice))
        }
        Principal::Operator => {
            let mut panels: Vec<ClientPanel> = s
                .store
                .list_clients()
                .await?
                .into_iter()
                .map(|client| ClientPanel { client, rows: Vec::new() })
                .collect();
            for i in integrations {
                if let Some(panel) = panels.iter_mut().find(|p| p.client.id == i.client_id) {
                    panel.rows.push(row(i));
                }
            }
            Ok(views::operator_view(user, csrf, &panels, notice))
        }
    }
}

/// Invites a user: the role must be chosen (there is no default), a client user names its client and an
/// operator names none. The one-time password is shown once, and must be replaced at the first sign-in.
async fn invite(g: &Signed, form: &Form, s: &PortalState) -> Response {
    let email = match Email::parse(form.get("email").map(String::as_str).unwrap_or_default()) {
        Ok(e) => e,
        Err(e) => return html::error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let client_slug = form.get("client").map(String::as_str).filter(|c| !c.is_empty());
    let role = match (form.get("role").map(String::as_str), client_slug) {
        (Some("client"), Some(_)) => Role::Client,
        (Some("operator"), None) => Role::Operator,
        (Some("client"), None) => {
            return html::error(StatusCode::BAD_REQUEST, "A client user needs a client: choose which one.");
        }
        (Some("operator"), Some(_)) => {
            return html::error(StatusCode::BAD_REQUEST, "An operator sees every client: leave the client empty.");
        }
        _ => {
            return html::error(
                StatusCode::BAD_REQUEST,
                "Choose whether the new user is an operator (every client) or a client user.",
            );
        }
    };
    let client = match client_slug {
        None => None,
        Some(slug) => match ClientSlug::parse(slug) {
            Ok(slug) => match s.store.client_by_slug(&slug).await {
                Ok(Some(c)) => Some(c),
                Ok(None) => return html::error(StatusCode::BAD_REQUEST, "No such client."),
                Err(e) => return unavailable(e),
            },
            Err(_) => return html::error(StatusCode::BAD_REQUEST, "No such client."),
        },
    };
    let password = random_token()[..20].to_owned();
    let hash = match crate::secrets::password::hash(SecretString::from(password.clone())).await {
        Ok(h) => h,
        Err(e) => return html::error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let new = NewUser {
        email,
        password_hash: hash,
        role,
        client_id: client.as_ref().map(|c| c.id),
        must_change_password: true,
    };
    match s.store.create_user(&new).await {
        Ok(u) => {
            audit(s, g, "user.created", u.client_id, format!("{} ({})", u.email, u.role)).await;
            views::show_once(
                "User invited",
                html! {
                    p { "Give " strong { (u.email) } " this one-time password; it is not shown again. They choose their own at their first sign-in:" }
                    p { code id="password" { (password) } }
                },
            )
        }
        Err(StoreError::Conflict(m)) => html::error(StatusCode::CONFLICT, &m),
        Err(e) => unavailable(e),
    }
}

/// The integration of `page` if the user may act on it; otherwise the answer to send (404, not 403, so
/// other clients' page ids are not confirmed).
async fn owned_page(g: &Signed, page: &str, s: &PortalState) -> Result<Integration, Response> {
    let principal = g.principal()?;
    let not_found = || html::error(StatusCode::NOT_FOUND, "No such Page.");
    let page = PageId::parse(page).map_err(|_| not_found())?;
    let i = s.store.integration_by_page(&page).await.map_err(unavailable)?.ok_or_else(not_found)?;
    match principal {
        Principal::Operator => Ok(i),
        Principal::Client(client) if client == i.client_id => Ok(i),
        Principal::Client(_) => Err(not_found()),
    }
}

async fn audit(s: &PortalState, g: &Signed, action: &str, client_id: Option<i64>, detail: String) {
    let entry =
        AuditEntry { actor: Actor::User(g.user().id), action: action.to_owned(), client_id, page_id: None, detail };
    if let Err(e) = s.store.append_audit(&entry).await {
        tracing::error!(error = %e, "cannot write audit row");
    }
}

fn see_other(location: &str) -> Response {
    match location.parse::<Uri>() {
        Ok(uri) => warp::redirect::see_other(uri).into_response(),
        Err(_) => html::error(StatusCode::INTERNAL_SERVER_ERROR, "could not build the redirect"),
    }
}

fn with_cookie(mut response: Response, set_cookie: &str) -> Response {
    if let Ok(value) = warp::http::HeaderValue::from_str(set_cookie) {
        response.headers_mut().append("set-cookie", value);
    }
    response
}

fn forbidden(message: &str) -> Response {
    html::error(StatusCode::FORBIDDEN, message)
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!(error = %e, "portal storage error");
    html::error(StatusCode::SERVICE_UNAVAILABLE, "The service is temporarily unavailable; please try again shortly.")
}
