//! The stand-in's Graph API and Login dialog over HTTP, joined with the chat completions stand-in (`crate::ai`)
//! and the control API. Handlers only translate requests to `Sim` methods and answers to Meta's wire format;
//! the rules live in `state`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng as _;
use serde_json::Value;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::{HeaderMap, StatusCode};
use warp::reply::Response;

use crate::dialog;
use crate::graph_error::GraphError;
use crate::reply::json_reply;
use crate::state::{SendRequest, Sim, Usage};

type Query = HashMap<String, String>;

/// Every route of the stand-in: Graph API, Login dialog, chat completions and the `/_sim` control API.
pub fn routes(sim: Arc<Sim>) -> BoxedFilter<(Response,)> {
    let with_sim = {
        let sim = sim.clone();
        warp::any().map(move || sim.clone()).boxed()
    };
    let version = warp::path::param::<String>()
        .and_then(|v: String| async move { if is_version(&v) { Ok(v) } else { Err(warp::reject::not_found()) } })
        .boxed();
    login_routes(&with_sim, &version)
        .or(page_routes(&with_sim, &version))
        .unify()
        .or(crate::ai::routes(sim.clone()))
        .unify()
        .or(crate::control::routes(sim))
        .unify()
        .recover(recover)
        .unify()
        .boxed()
}

type WithSim = BoxedFilter<(Arc<Sim>,)>;
type Version = BoxedFilter<(String,)>;

/// The Login dialog, the code and token exchanges, `debug_token`, `/me/permissions` and `/me/accounts`.
fn login_routes(with_sim: &WithSim, version: &Version) -> BoxedFilter<(Response,)> {
    let (query, headers) = (warp::query::<Query>(), warp::header::headers_cloned());
    let dialog_get = warp::get()
        .and(version.clone())
        .and(warp::path!("dialog" / "oauth"))
        .and(query)
        .and(with_sim.clone())
        .map(|_v: String, q: Query, sim: Arc<Sim>| dialog::show(&sim, &q));
    let dialog_post = warp::post()
        .and(version.clone())
        .and(warp::path!("dialog" / "oauth" / "decide"))
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::form::<Vec<(String, String)>>())
        .and(with_sim.clone())
        .map(|_v: String, form: Vec<(String, String)>, sim: Arc<Sim>| dialog::decide(&sim, &form));
    let access_token = warp::get()
        .and(version.clone())
        .and(warp::path!("oauth" / "access_token"))
        .and(query)
        .and(with_sim.clone())
        .then(|_v: String, q: Query, sim: Arc<Sim>| async move {
            let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
            let result = faults(&sim).await.and_then(|()| {
                if get("grant_type") == "fb_exchange_token" {
                    sim.exchange_long_lived(get("client_id"), get("client_secret"), get("fb_exchange_token"))
                } else {
                    sim.exchange_code(get("client_id"), get("client_secret"), get("redirect_uri"), get("code"))
                }
            });
            graph(&sim, "oauth/access_token", None, result)
        });
    let debug_token = warp::get()
        .and(version.clone())
        .and(warp::path!("debug_token"))
        .and(query)
        .and(headers)
        .and(with_sim.clone())
        .then(|_v: String, q: Query, h: HeaderMap, sim: Arc<Sim>| async move {
            let input = q.get("input_token").map(String::as_str).unwrap_or_default();
            let result = faults(&sim).await.and_then(|()| sim.debug_token(token(&q, &h, None).as_deref(), input));
            graph(&sim, "debug_token", None, result)
        });
    let permissions = warp::get()
        .and(version.clone())
        .and(warp::path!("me" / "permissions"))
        .and(query)
        .and(headers)
        .and(with_sim.clone())
        .then(|_v: String, q: Query, h: HeaderMap, sim: Arc<Sim>| async move {
            let result = user_call(&sim, &q, &h, |t| sim.permissions(t)).await;
            graph(&sim, "me/permissions", None, result)
        });
    let accounts = warp::get()
        .and(version.clone())
        .and(warp::path!("me" / "accounts"))
        .and(query)
        .and(headers)
        .and(with_sim.clone())
        .then(|v: String, q: Query, h: HeaderMap, sim: Arc<Sim>| async move {
            let host = h.get("host").and_then(|v| v.to_str().ok()).unwrap_or("127.0.0.1").to_owned();
            let next_base = format!("http://{host}/{v}/me/accounts");
            let limit = q.get("limit").and_then(|l| l.parse().ok());
            let after = q.get("after").cloned();
            let result = user_call(&sim, &q, &h, |t| sim.accounts(t, after.as_deref(), limit, &next_base)).await;
            graph(&sim, "me/accounts", None, result)
        });
    dialog_get
        .or(dialog_post)
        .unify()
        .or(access_token)
        .unify()
        .or(debug_token)
        .unify()
        .or(permissions)
        .unify()
        .or(accounts)
        .unify()
        .boxed()
}

/// The Send API, a Page's subscriptions and a Page's fields.
fn page_routes(with_sim: &WithSim, version: &Version) -> BoxedFilter<(Response,)> {
    let (query, headers) = (warp::query::<Query>(), warp::header::headers_cloned());
    let send_me =
        warp::post().and(version.clone()).and(warp::path!("me" / "messages")).map(|_v: String| None::<String>);
    let send_id =
        warp::post().and(version.clone()).and(warp::path!(String / "messages")).map(|_v: String, id: String| Some(id));
    let send = send_me
        .or(send_id)
        .unify()
        .and(query)
        .and(headers)
        .and(warp::body::content_length_limit(1024 * 1024))
        .and(warp::body::bytes())
        .and(with_sim.clone())
        .then(|path_id: Option<String>, q: Query, h: HeaderMap, body: bytes::Bytes, sim: Arc<Sim>| async move {
            send_message(&sim, path_id, &q, &h, &body).await
        });
    let subscribed_apps =
        version
            .clone()
            .map(|_v: String| ())
            .untuple_one()
            .and(warp::path!(String / "subscribed_apps"))
            .and(warp::method())
            .and(query)
            .and(headers)
            // Meta's documented call carries everything in the query, often with no body and no Content-Length,
            // so the form body is optional here (no length limit filter, which needs one).
            .and(warp::body::bytes())
            .and(with_sim.clone())
            .then(
                |page: String,
                 method: warp::http::Method,
                 q: Query,
                 h: HeaderMap,
                 body: bytes::Bytes,
                 sim: Arc<Sim>| async move {
                    let form: Query = serde_urlencoded::from_bytes(&body).unwrap_or_default();
                    let result = subscription_call(&sim, &page, &method, &q, &h, &form).await;
                    graph(&sim, "subscribed_apps", Some(&page), result)
                },
            );
    // A Page's fields, or (for a `t_…` id) a conversation's messages.
    let node =
        warp::get().and(version.clone()).and(warp::path!(String)).and(query).and(headers).and(with_sim.clone()).then(
            |_v: String, id: String, q: Query, h: HeaderMap, sim: Arc<Sim>| async move {
                if id.starts_with("t_") {
                    let result = user_call(&sim, &q, &h, |t| sim.conversation(&id, t)).await;
                    return graph(&sim, "conversation", None, result);
                }
                let fields = q.get("fields").cloned().unwrap_or_else(|| "id,name".to_owned());
                let result = user_call(&sim, &q, &h, |t| sim.page_fields(&id, t, &fields)).await;
                graph(&sim, "page", Some(&id), result)
            },
        );
    let conversations = warp::get()
        .and(version.clone())
        .and(warp::path!(String / "conversations"))
        .and(query)
        .and(headers)
        .and(with_sim.clone())
        .then(|_v: String, account: String, q: Query, h: HeaderMap, sim: Arc<Sim>| async move {
            let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
            let result =
                user_call(&sim, &q, &h, |t| sim.conversations(&account, t, get("platform"), get("user_id"))).await;
            graph(&sim, "conversations", Some(&account), result)
        });
    let pass = handover_route(with_sim, version, "pass_thread_control", Sim::pass_thread_control);
    let take = handover_route(with_sim, version, "take_thread_control", Sim::take_thread_control);
    send.or(subscribed_apps)
        .unify()
        .or(pass)
        .unify()
        .or(take)
        .unify()
        .or(conversations)
        .unify()
        .or(node)
        .unify()
        .boxed()
}

/// `POST`, `GET` or `DELETE /{page}/subscribed_apps`, with the token and proof in the query or the form.
async fn subscription_call(
    sim: &Sim,
    page: &str,
    method: &warp::http::Method,
    q: &Query,
    h: &HeaderMap,
    form: &Query,
) -> Result<Value, GraphError> {
    faults(sim).await?;
    let t = token(q, h, Some(form)).ok_or_else(GraphError::no_token)?;
    proof_check(sim, &t, q, form)?;
    match method.as_str() {
        "POST" => {
            let fields = q.get("subscribed_fields").or_else(|| form.get("subscribed_fields"));
            sim.subscribe(page, &t, fields.map(String::as_str).unwrap_or_default())
        }
        "GET" => sim.subscribed_apps(page, &t),
        "DELETE" => sim.unsubscribe(page, &t),
        _ => Err(GraphError::invalid_parameter("Unsupported method")),
    }
}

/// A Handover Protocol call by the app: `POST /{v}/{page or me}/{name}` with the Page token and a JSON body.
fn handover_route(
    with_sim: &WithSim,
    version: &Version,
    name: &'static str,
    call: fn(&Sim, &str, &str, &Value) -> Result<Value, GraphError>,
) -> BoxedFilter<(Response,)> {
    warp::post()
        .and(version.clone())
        .and(warp::path::param::<String>())
        .and(warp::path(name))
        .and(warp::path::end())
        .and(warp::query::<Query>())
        .and(warp::header::headers_cloned())
        .and(warp::body::content_length_limit(64 * 1024))
        .and(warp::body::json::<Value>())
        .and(with_sim.clone())
        .then(move |_v: String, id: String, q: Query, h: HeaderMap, body: Value, sim: Arc<Sim>| async move {
            let result = user_call(&sim, &q, &h, |t| call(&sim, &id, t, &body)).await;
            graph(&sim, name, Some(&id), result)
        })
        .boxed()
}

fn is_version(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|r| r.split_once('.'))
        .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit()))
}

/// The access token from the query, a form body, or an `Authorization: Bearer|OAuth` header.
fn token(q: &Query, h: &HeaderMap, form: Option<&Query>) -> Option<String> {
    if let Some(t) = q.get("access_token").or_else(|| form.and_then(|f| f.get("access_token"))) {
        return Some(t.clone());
    }
    let auth = h.get("authorization")?.to_str().ok()?;
    auth.strip_prefix("Bearer ").or_else(|| auth.strip_prefix("OAuth ")).map(str::to_owned)
}

/// The `appsecret_proof` (and `appsecret_time`) of a call made with `token`, from the query or form.
fn proof_check(sim: &Sim, token: &str, q: &Query, form: &Query) -> Result<(), GraphError> {
    let get = |k: &str| q.get(k).or_else(|| form.get(k)).map(String::as_str);
    sim.check_proof(token, get("appsecret_proof"), get("appsecret_time"))
}

/// Injected latency, timeouts and transient errors, applied to every Graph API call.
pub(crate) async fn faults(sim: &Sim) -> Result<(), GraphError> {
    let faults = sim.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let (timeout, error) = {
        let mut rng = rand::rng();
        (rng.random_bool(faults.timeout_rate.clamp(0.0, 1.0)), rng.random_bool(faults.error_rate.clamp(0.0, 1.0)))
    };
    if timeout {
        tokio::time::sleep(Duration::from_secs(sim.config().timeout_hold_secs)).await;
        return Err(GraphError::transient());
    }
    if error {
        return Err(GraphError::transient());
    }
    Ok(())
}

async fn user_call(
    sim: &Sim,
    q: &Query,
    h: &HeaderMap,
    call: impl FnOnce(&str) -> Result<Value, GraphError>,
) -> Result<Value, GraphError> {
    faults(sim).await?;
    let token = token(q, h, None).ok_or_else(GraphError::no_token)?;
    proof_check(sim, &token, q, &Query::new())?;
    call(&token)
}

async fn send_message(sim: &Sim, path_id: Option<String>, q: &Query, h: &HeaderMap, body: &[u8]) -> Response {
    if let Err(e) = faults(sim).await {
        return graph(sim, "messages", path_id.as_deref(), Err(e));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            let e = GraphError::invalid_parameter("(#100) The request body must be a JSON object");
            return graph(sim, "messages", path_id.as_deref(), Err(e));
        }
    };
    let from_body = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_owned);
    let req = SendRequest {
        token: token(q, h, None).or_else(|| from_body("access_token")),
        proof: q.get("appsecret_proof").cloned().or_else(|| from_body("appsecret_proof")),
        proof_time: q.get("appsecret_time").cloned().or_else(|| from_body("appsecret_time")),
        path_id: path_id.clone(),
        body,
    };
    match sim.send(&req) {
        Ok((reply, usage)) => with_usage(json_reply(&reply, StatusCode::OK), &usage),
        Err((e, usage)) => {
            sim.record_error("messages", path_id.as_deref(), &e);
            let response = json_reply(&e.body(), e.status());
            match usage {
                Some(u) => with_usage(response, &u),
                None => response,
            }
        }
    }
}

fn with_usage(mut response: Response, usage: &Usage) -> Response {
    if let Ok(value) = usage.header_value().parse() {
        response.headers_mut().insert("x-business-use-case-usage", value);
    }
    response
}

/// A Graph answer: the value with 200, or Meta's error envelope (recorded for inspection).
fn graph(sim: &Sim, route: &str, page: Option<&str>, result: Result<Value, GraphError>) -> Response {
    match result {
        Ok(value) => json_reply(&value, StatusCode::OK),
        Err(e) => {
            sim.record_error(route, page, &e);
            json_reply(&e.body(), e.status())
        }
    }
}

async fn recover(rejection: warp::Rejection) -> Result<Response, Infallible> {
    let (status, message) = if rejection.is_not_found() {
        (StatusCode::NOT_FOUND, "Unknown path components")
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        (StatusCode::METHOD_NOT_ALLOWED, "Unsupported method")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        (StatusCode::PAYLOAD_TOO_LARGE, "Request body too large")
    } else {
        (StatusCode::BAD_REQUEST, "Bad request")
    };
    let e = GraphError::invalid_parameter(message);
    Ok(json_reply(&e.body(), status))
}
