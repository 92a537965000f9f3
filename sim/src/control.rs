//! The control API under `/_sim`: inject faults, change the configuration, and read back what the
//! stand-in received, so tests can assert on it. Not part of Meta's API. The chat completions stand-in's
//! switches are under `/_sim/ai` (`control/ai.rs`).

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::reply::json_reply;
use crate::state::{Channel, Faults, RecipientState, Sim};

mod ai;

#[derive(Deserialize)]
struct PersonAnswer {
    recipient: String,
    text: String,
    /// Where the app's webhook listens (Meta's callback URL).
    webhook: String,
}

#[derive(Deserialize)]
struct InboxDone {
    recipient: String,
    webhook: String,
}

/// Posts a signed body to the app's webhook, as Meta does; the answer is the status the webhook gave.
async fn post_webhook(url: &str, signed: Result<(Vec<u8>, String), String>) -> Response {
    let (body, signature) = match signed {
        Ok(signed) => signed,
        Err(problem) => return bad(&problem),
    };
    let sent = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("x-hub-signature-256", signature)
        .body(body)
        .send()
        .await;
    match sent {
        Ok(r) => ok(json!({ "webhook_status": r.status().as_u16() })),
        Err(e) => json_reply(&json!({ "error": e.to_string() }), StatusCode::BAD_GATEWAY),
    }
}

#[derive(Deserialize)]
struct Invalidate {
    #[serde(default = "password_changed")]
    subcode: u32,
}

fn password_changed() -> u32 {
    460
}

#[derive(Deserialize)]
struct Throttle {
    seconds: u64,
    #[serde(default = "messenger_buc")]
    code: u32,
}

fn messenger_buc() -> u32 {
    80006
}

#[derive(Deserialize)]
struct Recipient {
    #[serde(default = "ok_state")]
    state: RecipientState,
    #[serde(default)]
    channel: Option<Channel>,
}

fn ok_state() -> RecipientState {
    RecipientState::Ok
}

#[derive(Deserialize)]
struct Filter_ {
    page_id: Option<String>,
}

/// Every `/_sim` route: reads, writes and the chat completions stand-in's switches.
pub fn routes(sim: Arc<Sim>) -> BoxedFilter<(Response,)> {
    let with_sim = warp::any().map(move || sim.clone()).boxed();
    read_routes(&with_sim).or(write_routes(&with_sim)).unify().or(ai::routes(&with_sim)).unify().boxed()
}

/// What the stand-in received and holds: its state, messages, calls, errors, subscriptions, configuration.
fn read_routes(with_sim: &BoxedFilter<(Arc<Sim>,)>) -> BoxedFilter<(Response,)> {
    let base = warp::path("_sim");
    let state =
        warp::get().and(base).and(warp::path!("state")).and(with_sim.clone()).map(|sim: Arc<Sim>| ok(sim.summary()));
    let messages =
        warp::get().and(base).and(warp::path!("messages")).and(warp::query::<Filter_>()).and(with_sim.clone()).map(
            |f: Filter_, sim: Arc<Sim>| {
                let all = sim.messages();
                ok(json!(
                    all.into_iter().filter(|m| f.page_id.as_ref().is_none_or(|p| &m.page_id == p)).collect::<Vec<_>>()
                ))
            },
        );
    let calls =
        warp::get().and(base).and(warp::path!("calls")).and(warp::query::<Filter_>()).and(with_sim.clone()).map(
            |f: Filter_, sim: Arc<Sim>| {
                let all = sim.calls();
                ok(json!(all.into_iter().filter(|c| f.page_id.is_none() || c.page_id == f.page_id).collect::<Vec<_>>()))
            },
        );
    let errors = warp::get()
        .and(base)
        .and(warp::path!("errors"))
        .and(with_sim.clone())
        .map(|sim: Arc<Sim>| ok(json!(sim.errors())));
    let subscriptions = warp::get()
        .and(base)
        .and(warp::path!("subscriptions"))
        .and(with_sim.clone())
        .map(|sim: Arc<Sim>| ok(json!(sim.subscriptions())));
    let threads = warp::get()
        .and(base)
        .and(warp::path!("threads"))
        .and(with_sim.clone())
        .map(|sim: Arc<Sim>| ok(sim.thread_owners()));
    let config_get = warp::get()
        .and(base)
        .and(warp::path!("config"))
        .and(with_sim.clone())
        .map(|sim: Arc<Sim>| ok(json!(sim.config())));
    state
        .or(messages)
        .unify()
        .or(calls)
        .unify()
        .or(errors)
        .unify()
        .or(subscriptions)
        .unify()
        .or(threads)
        .unify()
        .or(config_get)
        .unify()
        .boxed()
}

/// Changes: the configuration, faults, dead tokens, throttles, subscriptions, recipients, a reset.
fn write_routes(with_sim: &BoxedFilter<(Arc<Sim>,)>) -> BoxedFilter<(Response,)> {
    let base = warp::path("_sim");
    let json_body = warp::body::content_length_limit(256 * 1024).and(warp::body::json::<Value>());
    let config_post = warp::post().and(base).and(warp::path!("config")).and(json_body).and(with_sim.clone()).map(
        |patch: Value, sim: Arc<Sim>| match sim.merge_config(&patch) {
            Ok(config) => ok(json!(config)),
            Err(problem) => bad(&problem),
        },
    );
    let faults = warp::post().and(base).and(warp::path!("faults")).and(json_body).and(with_sim.clone()).map(
        |v: Value, sim: Arc<Sim>| match serde_json::from_value::<Faults>(v) {
            Ok(f) if (0.0..=1.0).contains(&f.error_rate) && (0.0..=1.0).contains(&f.timeout_rate) => {
                sim.set_faults(f.clone());
                ok(json!(f))
            }
            Ok(_) => bad("error_rate and timeout_rate must be between 0 and 1"),
            Err(e) => bad(&e.to_string()),
        },
    );
    let invalidate = warp::post()
        .and(base)
        .and(warp::path!("pages" / String / "invalidate-token"))
        .and(json_body)
        .and(with_sim.clone())
        .map(|page: String, v: Value, sim: Arc<Sim>| match serde_json::from_value::<Invalidate>(v) {
            Ok(i) => ok(json!({ "invalidated": sim.invalidate_page_tokens(&page, i.subcode), "subcode": i.subcode })),
            Err(e) => bad(&e.to_string()),
        });
    let throttle = warp::post()
        .and(base)
        .and(warp::path!("pages" / String / "throttle"))
        .and(json_body)
        .and(with_sim.clone())
        .map(|page: String, v: Value, sim: Arc<Sim>| match serde_json::from_value::<Throttle>(v) {
            Ok(t) => {
                sim.throttle(&page, t.seconds, t.code);
                ok(json!({ "page_id": page, "seconds": t.seconds, "code": t.code }))
            }
            Err(e) => bad(&e.to_string()),
        });
    let unsubscribe = warp::post()
        .and(base)
        .and(warp::path!("pages" / String / "unsubscribe"))
        .and(with_sim.clone())
        .map(|page: String, sim: Arc<Sim>| ok(json!({ "was_subscribed": sim.drop_subscription(&page) })));
    let recipient =
        warp::post().and(base).and(warp::path!("recipients" / String)).and(json_body).and(with_sim.clone()).map(
            |id: String, v: Value, sim: Arc<Sim>| match serde_json::from_value::<Recipient>(v) {
                Ok(r) => {
                    sim.set_recipient(&id, r.state, r.channel);
                    ok(json!({ "recipient": id }))
                }
                Err(e) => bad(&e.to_string()),
            },
        );
    // A person at the business answers a customer in the Page Inbox: Meta sends the app an echo naming the
    // inbox app. The answer is the status the app's webhook gave.
    let person = warp::post()
        .and(base)
        .and(warp::path!("pages" / String / "person-reply"))
        .and(json_body)
        .and(with_sim.clone())
        .then(|page: String, v: Value, sim: Arc<Sim>| async move {
            match serde_json::from_value::<PersonAnswer>(v) {
                Ok(a) => post_webhook(&a.webhook, sim.person_answers(&page, &a.recipient, &a.text)).await,
                Err(e) => bad(&e.to_string()),
            }
        });
    // A person marks a conversation done in the inbox: it goes back to the app, which Meta tells.
    let done = warp::post()
        .and(base)
        .and(warp::path!("pages" / String / "inbox-done"))
        .and(json_body)
        .and(with_sim.clone())
        .then(|page: String, v: Value, sim: Arc<Sim>| async move {
            match serde_json::from_value::<InboxDone>(v) {
                Ok(d) => post_webhook(&d.webhook, sim.inbox_done(&page, &d.recipient)).await,
                Err(e) => bad(&e.to_string()),
            }
        });
    let reset = warp::post().and(base).and(warp::path!("reset")).and(with_sim.clone()).map(|sim: Arc<Sim>| {
        sim.reset();
        ok(json!({ "reset": true }))
    });

    config_post
        .or(faults)
        .unify()
        .or(invalidate)
        .unify()
        .or(throttle)
        .unify()
        .or(unsubscribe)
        .unify()
        .or(recipient)
        .unify()
        .or(person)
        .unify()
        .or(done)
        .unify()
        .or(reset)
        .unify()
        .boxed()
}

fn ok(value: Value) -> Response {
    json_reply(&value, StatusCode::OK)
}

fn bad(problem: &str) -> Response {
    json_reply(&json!({ "error": problem }), StatusCode::BAD_REQUEST)
}
