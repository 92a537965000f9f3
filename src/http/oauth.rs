//! Facebook Login and Meta's callbacks: `/api/auth/facebook/{start,callback,deauthorize,data-deletion}`,
//! the data-deletion status page and the connect result page.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::json;
use warp::reply::Response;
use warp::{Filter, Rejection, Reply};

use super::cookies;
use super::error::{ApiError, found};
use super::html;
use super::server::ClientAddr;
use super::throttle::{START_ADDRESS, START_LINK, Throttle};
use crate::domain::ClientSlug;
use crate::onboarding::{CallbackQuery, MetaCallbackError, Onboarding, OutcomeKind};
use crate::secrets::tokens;
use crate::store::Client;

type Query = HashMap<String, String>;

/// The cookie that binds a Facebook Login to the browser that started it (`__Host-` prefixed on https).
const BROWSER_COOKIE: &str = "sb_oauth";
const BROWSER_COOKIE_SECURE: &str = "__Host-sb_oauth";

/// The name of the browser-binding cookie for this deployment.
pub fn browser_cookie_name(o: &Onboarding) -> &'static str {
    if o.secure() { BROWSER_COOKIE_SECURE } else { BROWSER_COOKIE }
}

/// The `Set-Cookie` for a flow's browser value: HttpOnly, SameSite=Lax (sent on Facebook's redirect back, a
/// top-level navigation), as long as a state lives, Secure on https.
pub fn browser_cookie(o: &Onboarding, value: &str) -> String {
    cookies::cookie(browser_cookie_name(o), value, o.state_ttl().as_secs(), o.secure())
}

pub fn routes(
    onboarding: Onboarding,
    bodies: std::sync::Arc<super::BodyBudget>,
    throttle: std::sync::Arc<Throttle>,
) -> impl Filter<Extract = (Response,), Error = Rejection> + Clone {
    let form = super::body::form(16 * 1024, bodies);
    let with = warp::any().map(move || onboarding.clone());
    let cookies = warp::header::optional::<String>("cookie");
    let show = warp::path!("api" / "auth" / "facebook" / "start")
        .and(warp::get())
        .and(warp::query::<Query>())
        .and(cookies)
        .and(with.clone())
        .and_then(|q: Query, cookies: Option<String>, o: Onboarding| async move {
            let browser = cookies::cookie_value(cookies.as_deref(), browser_cookie_name(&o));
            show_start(&q, browser, &o).await
        });
    let with_throttle = warp::any().map(move || throttle.clone());
    let start = warp::path!("api" / "auth" / "facebook" / "start")
        .and(warp::post())
        .and(form.clone())
        .and(cookies)
        .and(warp::ext::optional::<ClientAddr>())
        .and(with.clone())
        .and(with_throttle)
        .and_then(
            |f: Query, cookies: Option<String>, client: Option<ClientAddr>, o: Onboarding, t: Arc<Throttle>| async move {
                let browser = cookies::cookie_value(cookies.as_deref(), browser_cookie_name(&o));
                start(&f, browser, client, &o, &t).await
            },
        );
    let start = show.or(start).unify();
    let callback = warp::path!("api" / "auth" / "facebook" / "callback")
        .and(warp::get())
        .and(warp::query::<CallbackQuery>())
        .and(cookies)
        .and(with.clone())
        .and_then(|q: CallbackQuery, cookies: Option<String>, o: Onboarding| async move {
            let browser = cookies::cookie_value(cookies.as_deref(), browser_cookie_name(&o));
            let path = o.finish(q, browser).await.map_err(|e| warp::reject::custom(ApiError::from(e)))?;
            Ok::<_, Rejection>(found(&path))
        });
    let deauthorize = warp::path!("api" / "auth" / "facebook" / "deauthorize")
        .and(warp::post())
        .and(form.clone())
        .and(with.clone())
        .and(warp::any().map(|| false))
        .or(warp::path!("api" / "auth" / "facebook" / "data-deletion")
            .and(warp::post())
            .and(form)
            .and(with.clone())
            .and(warp::any().map(|| true)))
        .unify()
        .and_then(|form: Query, o: Onboarding, delete: bool| async move { meta_callback(&form, &o, delete).await });
    let deletion_status = warp::path!("api" / "auth" / "facebook" / "data-deletion" / "status")
        .and(warp::get())
        .and(warp::query::<Query>())
        .and(with.clone())
        .and_then(|q: Query, o: Onboarding| async move {
            let code = q.get("code").map(String::as_str).unwrap_or_default();
            match o.store().deletion_request(code).await.map_err(unavailable)? {
                Some(request) => Ok(html::deletion_status(&request)),
                None => {
                    Err(warp::reject::custom(ApiError::NotFound("no data deletion request has this code".to_owned())))
                }
            }
        });
    let result = warp::path!("portal" / "connect-result" / String)
        .and(warp::get())
        .and(with)
        .and_then(|key: String, o: Onboarding| async move { connect_result(&key, &o).await });
    start.or(callback).unify().or(deauthorize).unify().or(deletion_status).unify().or(result).unify()
}

/// The client an onboarding link (its query or form fields) is for, once the link is verified.
async fn linked_client(q: &Query, o: &Onboarding) -> Result<Client, Rejection> {
    let get = |k: &str| q.get(k).map(String::as_str);
    let slug = o
        .links()
        .verify(get("client"), get("expires"), get("sig"), crate::clock::now().timestamp())
        .map_err(|e| warp::reject::custom(ApiError::OnboardLink(e)))?;
    let client = match ClientSlug::parse(&slug) {
        Ok(slug) => o.store().client_by_slug(&slug).await.map_err(unavailable)?,
        Err(_) => None,
    };
    client.ok_or_else(|| warp::reject::custom(ApiError::UnknownClient(slug)))
}

/// What proves the start page was shown in this browser: a hash of the browser's own cookie value, which a page
/// elsewhere can neither read nor send along with a cross-site POST (the cookie is SameSite=Lax).
fn shown_token(browser: &str) -> String {
    hex::encode(tokens::hash(&format!("switchboard/start-shown/v1\0{browser}")))
}

/// `GET start`: a page that names the business the Pages will be connected to, with the button that goes on
/// to Facebook. A link forwarded to someone else says whose it is before anything happens; nothing is stored.
async fn show_start(q: &Query, browser: Option<&str>, o: &Onboarding) -> Result<Response, Rejection> {
    let client = linked_client(q, o).await?;
    let browser = browser.filter(|b| tokens::is_token(b)).map_or_else(tokens::random_token, str::to_owned);
    let fields: Vec<(&str, &str)> = ["client", "expires", "sig", "rerequest"]
        .into_iter()
        .filter_map(|k| q.get(k).map(|v| (k, v.as_str())))
        .collect();
    let page = html::start(&client.name, &fields, &shown_token(&browser));
    Ok(warp::reply::with_header(page, "set-cookie", browser_cookie(o, &browser)).into_response())
}

/// `POST start`, from the start page: throttled per address and per link, then the state is made and the
/// browser goes to Facebook's dialog.
async fn start(
    f: &Query,
    browser: Option<&str>,
    client_addr: Option<ClientAddr>,
    o: &Onboarding,
    throttle: &Throttle,
) -> Result<Response, Rejection> {
    let shown = f.get("shown").map(String::as_str).unwrap_or_default();
    let Some(browser) = browser.filter(|b| tokens::same(&shown_token(b), shown)) else {
        return Err(warp::reject::custom(ApiError::StartNotShown));
    };
    let client = linked_client(f, o).await?;
    let address = client_addr.map_or_else(|| "unknown".to_owned(), |c| c.key().to_string());
    let sig = f.get("sig").map(String::as_str).unwrap_or_default();
    for (limit, key, what) in [
        (START_ADDRESS, address.as_str(), "Too many Facebook sign-ins were started from this address."),
        (START_LINK, sig, "Too many Facebook sign-ins were started from this link."),
    ] {
        if let Err(wait) = throttle.hit(limit, key).await.map_err(unavailable)? {
            return Err(warp::reject::custom(ApiError::TooMany(what, wait)));
        }
    }
    // Verified above, so the flow (and whatever its result page offers) ends when the link does.
    let link_expires = f.get("expires").and_then(|e| e.parse::<i64>().ok());
    let rerequest = f.get("rerequest").is_some_and(|r| r == "1");
    let begun = o.begin(client.id, None, rerequest, Some(browser), link_expires).await.map_err(unavailable)?;
    Ok(warp::reply::with_header(found(&begun.dialog), "set-cookie", browser_cookie(o, &begun.browser)).into_response())
}

async fn meta_callback(form: &Query, o: &Onboarding, delete: bool) -> Result<Response, Rejection> {
    let signed = form.get("signed_request").map(String::as_str).unwrap_or_default();
    let failed = |e: MetaCallbackError| match e {
        MetaCallbackError::Request(e) => warp::reject::custom(ApiError::SignedRequest(e)),
        MetaCallbackError::Store(e) => unavailable(e),
    };
    if delete {
        let code = o.on_data_deletion(signed).await.map_err(failed)?;
        let body = json!({ "url": o.deletion_status_url(&code), "confirmation_code": code });
        Ok(warp::reply::json(&body).into_response())
    } else {
        let revoked = o.on_deauthorize(signed).await.map_err(failed)?;
        tracing::info!(revoked, "deauthorize callback handled");
        Ok(warp::reply::json(&json!({ "success": true })).into_response())
    }
}

async fn connect_result(key: &str, o: &Onboarding) -> Result<Response, Rejection> {
    let not_found = || warp::reject::custom(ApiError::NotFound("this result is not known (or has expired)".to_owned()));
    if !tokens::is_token(key) {
        return Err(not_found());
    }
    let stored = o.store().oauth_outcome(key).await.map_err(unavailable)?.ok_or_else(not_found)?;
    if crate::clock::now() - stored.created_at
        > chrono::Duration::from_std(crate::onboarding::STATE_KEPT).unwrap_or_default()
    {
        return Err(not_found());
    }
    let outcome: crate::onboarding::Outcome = serde_json::from_str(&stored.outcome).map_err(|_| not_found())?;
    // "Connect again" is the link the flow started from, with its own expiry: a public page never hands out
    // a link that lives longer than the one the operator sent.
    let retry = match outcome.kind {
        OutcomeKind::Connected if outcome.refused.is_empty() => html::Retry::NotNeeded,
        kind => match (ClientSlug::parse(&outcome.client_slug), stored.link_expires_at) {
            (Ok(slug), Some(expires)) if expires > crate::clock::now() => {
                let link = o.onboard_link_until(&slug, expires.timestamp());
                html::Retry::Link(if kind == OutcomeKind::MissingPermissions {
                    format!("{link}&rerequest=1")
                } else {
                    link
                })
            }
            _ => html::Retry::Expired,
        },
    };
    Ok(html::outcome(&outcome, &retry))
}

fn unavailable(e: crate::store::StoreError) -> Rejection {
    tracing::error!(error = %e, "storage error");
    warp::reject::custom(ApiError::Unavailable)
}
