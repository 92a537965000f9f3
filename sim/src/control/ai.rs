//! `/_sim/ai`: the chat completions stand-in's switches (the fault, the API key) and what it received.
//! Same conventions as the rest of the control API: JSON in, JSON out, `{"error": …}` with a 400.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::Response;

use super::{bad, ok};
use crate::state::{AiFaultSwitch, Sim};

/// `POST /_sim/ai/key`: `{"key": "…"}` requires that bearer key, `{"key": null}` accepts any call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Key {
    key: Option<String>,
}

/// The `/_sim/ai/…` routes.
pub(super) fn routes(with_sim: &BoxedFilter<(Arc<Sim>,)>) -> BoxedFilter<(Response,)> {
    let json_body = warp::body::content_length_limit(64 * 1024).and(warp::body::json::<Value>());
    // An unknown mode fails to deserialize, and serde's message names it and lists the known ones.
    let fault = warp::post().and(warp::path!("_sim" / "ai" / "fault")).and(json_body).and(with_sim.clone()).map(
        |v: Value, sim: Arc<Sim>| match serde_json::from_value::<AiFaultSwitch>(v) {
            Ok(switch) => ok(json!(sim.set_ai_fault(switch))),
            Err(e) => bad(&format!("bad AI fault: {e}")),
        },
    );
    // The answer says whether a key is now required; it never repeats the key.
    let key = warp::post().and(warp::path!("_sim" / "ai" / "key")).and(json_body).and(with_sim.clone()).map(
        |v: Value, sim: Arc<Sim>| match serde_json::from_value::<Key>(v) {
            Ok(Key { key }) => {
                let required = key.as_deref().is_some_and(|k| !k.is_empty());
                sim.set_ai_key(key);
                ok(json!({ "key_required": required }))
            }
            Err(e) => bad(&e.to_string()),
        },
    );
    let requests = warp::get()
        .and(warp::path!("_sim" / "ai" / "requests"))
        .and(with_sim.clone())
        .map(|sim: Arc<Sim>| ok(json!(sim.ai_requests())));
    let clear =
        warp::delete().and(warp::path!("_sim" / "ai" / "requests")).and(with_sim.clone()).map(|sim: Arc<Sim>| {
            sim.clear_ai_requests();
            ok(json!({ "cleared": true }))
        });
    fault.or(key).unify().or(requests).unify().or(clear).unify().boxed()
}
