//! The Facebook Login dialog stand-in: a small consent page ("Continue as …" / "Cancel") that lists the
//! fake user's Pages and the requested permissions, each of which the person may untick, then redirects
//! back to the app with `code` and `state`, or with `error=access_denied`.

use maud::{DOCTYPE, Markup, html};
use warp::Reply;
use warp::http::StatusCode;
use warp::reply::Response;

use crate::config::KNOWN_SCOPES;
use crate::state::{Decision, Sim};

type Query = std::collections::HashMap<String, String>;

/// `GET /{version}/dialog/oauth`.
pub fn show(sim: &Sim, q: &Query) -> Response {
    let get = |k: &str| q.get(k).map(String::as_str).unwrap_or_default();
    let (client_id, redirect_uri) = (get("client_id"), get("redirect_uri"));
    let view = match sim.check_dialog(client_id, redirect_uri) {
        Ok(view) => view,
        Err(problem) => return error_page(&problem),
    };
    if !matches!(get("response_type"), "" | "code") {
        return error_page("response_type must be code for a server-side login flow.");
    }
    let requested = requested_scopes(get("scope"), q.contains_key("config_id"));
    let Some(user) = view.user else { return error_page("No user is logged in to the stand-in.") };
    page(html! {
        h1 { "Switchboard is requesting access" }
        p { "Logged in as " strong { (user.name) } ". Choose what to share." }
        form method="post" action="oauth/decide" {
            input type="hidden" name="client_id" value=(client_id);
            input type="hidden" name="redirect_uri" value=(redirect_uri);
            input type="hidden" name="state" value=(get("state"));
            input type="hidden" name="requested" value=(requested.join(","));
            fieldset {
                legend { "Pages" }
                @for p in &user.pages {
                    label {
                        input type="checkbox" name="page" value=(p.id) checked;
                        " " (p.name) " (" (p.id) ")"
                        @if let Some(ig) = &p.instagram_business_account { " · Instagram " (ig) }
                    }
                    br;
                }
            }
            fieldset {
                legend { "Permissions" }
                @for s in &requested {
                    label { input type="checkbox" name="scope" value=(s) checked; " " (s) }
                    br;
                }
            }
            button type="submit" name="decision" value="continue" id="continue" { "Continue as " (user.name) }
            " "
            button type="submit" name="decision" value="cancel" id="cancel" { "Cancel" }
        }
    })
}

/// `POST /{version}/dialog/oauth/decide`: the person pressed a button.
pub fn decide(sim: &Sim, form: &[(String, String)]) -> Response {
    let one = |k: &str| form.iter().find(|(name, _)| name == k).map(|(_, v)| v.as_str()).unwrap_or_default();
    let all = |k: &str| form.iter().filter(|(name, _)| name == k).map(|(_, v)| v.clone()).collect::<Vec<_>>();
    let redirect_uri = one("redirect_uri");
    if let Err(problem) = sim.check_dialog(one("client_id"), redirect_uri) {
        return error_page(&problem);
    }
    let requested: Vec<String> = one("requested").split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    let Ok(mut target) = url::Url::parse(redirect_uri) else { return error_page("redirect_uri is not a URL.") };
    let state = one("state");
    {
        let mut pairs = target.query_pairs_mut();
        if one("decision") == "continue" {
            let decision = Decision::Continue { scopes: all("scope"), pages: all("page") };
            if let Some(code) = sim.decide(redirect_uri, &requested, decision) {
                pairs.append_pair("code", &code);
            }
        } else {
            sim.decide(redirect_uri, &requested, Decision::Cancel);
            pairs
                .append_pair("error", "access_denied")
                .append_pair("error_code", "200")
                .append_pair("error_description", "Permissions error")
                .append_pair("error_reason", "user_denied");
        }
        if !state.is_empty() {
            pairs.append_pair("state", state);
        }
    }
    match target.as_str().parse::<warp::http::Uri>() {
        Ok(uri) => warp::redirect::found(uri).into_response(),
        Err(_) => error_page("redirect_uri is not a valid URI."),
    }
}

fn requested_scopes(scope: &str, has_config_id: bool) -> Vec<String> {
    let listed: Vec<String> =
        scope.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect();
    if listed.is_empty() && has_config_id {
        // Facebook Login for Business: the configuration carries the permissions.
        return KNOWN_SCOPES.iter().map(|s| (*s).to_owned()).collect();
    }
    listed
}

fn page(body: Markup) -> Response {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Log in with Facebook (meta-sim)" }
                style { "body{font-family:sans-serif;max-width:36rem;margin:2rem auto;padding:0 1rem}button{font-size:1rem;padding:.5rem 1rem}fieldset{margin:1rem 0}" }
            }
            body { (body) }
        }
    };
    warp::reply::html(markup.into_string()).into_response()
}

fn error_page(problem: &str) -> Response {
    let response = page(html! { h1 { "Sorry, something went wrong" } p { (problem) } });
    warp::reply::with_status(response, StatusCode::BAD_REQUEST).into_response()
}
