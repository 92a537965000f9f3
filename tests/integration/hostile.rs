//! Onboarding, the portal and the relay against a hostile client: each test fails without the protection it
//! names (the OAuth state bound to its browser, onboarding links that cannot renew themselves, sign-in
//! throttling that cannot lock the owner out, security headers, fail-closed roles, first sign-in password
//! changes, and relay calls that follow no redirect, read bounded answers and reach no private address).

use std::collections::HashMap;
use std::time::Duration;

use secrecy::SecretString;
use switchboard::domain::{Actor, Email, PageId, Role};
use switchboard::store::{IntegrationStatus, ResponderSetting, RevokeIf, StoreError};

use crate::app::{Options, PAGE_A, PAGE_B, TestApp, decide, spawn_app, text_event};
use crate::onboarding::{fresh_app, link_until, location};
use crate::portal::{PASSWORD, add_user, browser, field, page, sign_in};
use crate::support::eventually;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dialog_forwarded_to_another_browser_connects_nothing() {
    let app = fresh_app().await;
    // The attacker holds Rural King's onboarding link and starts the flow in their own browser…
    let attacker = browser();
    let link = link_until(&app, "rural-king", switchboard::clock::now().timestamp() + 3600);
    let resp = crate::support::login::press_continue(&attacker, &link).await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("sb_oauth=") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let dialog = url::Url::parse(&location(&resp)).unwrap();
    // …and forwards Facebook's dialog to the admin of Woodstock Outlet's Page, who consents in theirs.
    let victim = browser();
    let callback = decide(&victim, &dialog, &[PAGE_A], "continue").await;
    let resp = victim.get(&callback).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("started in another browser"), "{page}");
    assert!(app.db.store.list_integrations().await.unwrap().is_empty(), "nothing was connected");
    assert_eq!(
        app.db.scalar("SELECT CAST(count(*) AS TEXT) FROM oauth_states WHERE used_at IS NULL").await.as_deref(),
        Some("1"),
        "the state was not consumed"
    );
    // A callback with no cookie at all is the same.
    let bare = browser();
    assert_eq!(bare.get(&callback).send().await.unwrap().status().as_u16(), 400);
    assert!(app.db.store.list_integrations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_again_never_outlives_the_link_the_flow_started_from() {
    let app = fresh_app().await;
    let b = browser();
    let expires = switchboard::clock::now().timestamp() + 3;
    let resp = crate::support::login::press_continue(&b, &link_until(&app, "woodstock-outlet", expires)).await.unwrap();
    let dialog = url::Url::parse(&location(&resp)).unwrap();
    let state: HashMap<String, String> = dialog.query_pairs().into_owned().collect();
    // "Cancelled", straight to the callback, without Facebook.
    let resp = b
        .get(app.url(&format!("/api/auth/facebook/callback?error=access_denied&state={}", state["state"])))
        .send()
        .await
        .unwrap();
    let result = location(&resp);
    let page = b.get(app.url(&result)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Connect with Facebook again"), "{page}");
    assert!(page.contains(&format!("expires={expires}&amp;")), "the same expiry as the link that was sent: {page}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let page = b.get(app.url(&result)).send().await.unwrap().text().await.unwrap();
    assert!(!page.contains("/api/auth/facebook/start"), "an expired link is not renewed: {page}");
    assert!(page.contains("has expired"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_throttling_never_locks_out_a_browser_the_owner_used_and_ignores_rotating_addresses() {
    let app = spawn_app(Options::with(|s| s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    let owner = browser();
    assert_eq!(sign_in(&app, &owner, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let _ = owner.post(app.url("/portal/logout")).send().await;

    // An attacker guesses from many IPv4 addresses, forwarded by the trusted proxy: the account's limit trips.
    let attacker = browser();
    let guess = |xff: String| {
        let attacker = attacker.clone();
        let url = app.url("/portal/login");
        async move {
            let page = attacker.get(&url).header("x-forwarded-for", &xff).send().await.unwrap().text().await.unwrap();
            let csrf = field(&page, "csrf");
            attacker
                .post(&url)
                .header("x-forwarded-for", &xff)
                .form(&[
                    ("csrf", csrf.as_str()),
                    ("email", "owner@woodstock.example"),
                    ("password", "guess guess guess"),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let mut statuses = Vec::new();
    for i in 0..8 {
        statuses.push(guess(format!("203.0.113.{i}")).await);
    }
    assert!(statuses.contains(&429), "the account is slowed whatever the address: {statuses:?}");
    // The owner, in the browser they signed in with before, is not locked out.
    assert_eq!(sign_in(&app, &owner, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    // A browser the owner never used waits like the attacker.
    assert_eq!(sign_in(&app, &browser(), "owner@woodstock.example", PASSWORD).await.status().as_u16(), 429);

    // Rotating through one IPv6 /64 is one address: it is slowed after 20 attempts whatever the accounts.
    let statuses = attempts_from(&app, |i| format!("2001:db8:1:2::{i:x}")).await;
    assert!(statuses.contains(&429), "one /64 is one address: {statuses:?}");
}

/// 30 sign-in attempts at once, each for another account, from the forwarded addresses `xff` makes.
async fn attempts_from(app: &TestApp, xff: impl Fn(usize) -> String) -> Vec<u16> {
    let attempts = (0..30).map(|i| {
        let (url, xff) = (app.url("/portal/login"), xff(i));
        async move {
            let b = browser();
            let page = b.get(&url).send().await.unwrap().text().await.unwrap();
            let csrf = field(&page, "csrf");
            let email = format!("user{i}@x.example");
            let form = [("csrf", csrf.as_str()), ("email", email.as_str()), ("password", "x")];
            b.post(&url).header("x-forwarded-for", xff).form(&form).send().await.unwrap().status().as_u16()
        }
    });
    futures_util::future::join_all(attempts).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_are_ignored_unless_the_peer_is_a_trusted_proxy() {
    let app = spawn_app(Options::default()).await;
    let statuses = attempts_from(&app, |i| format!("198.51.100.{i}")).await;
    assert!(statuses.contains(&429), "a forged X-Forwarded-For from an untrusted peer is ignored: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_html_page_carries_the_security_headers() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    let b = browser();
    let mut pages = vec![b.get(app.url("/portal/login")).send().await.unwrap()];
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    pages.push(b.get(app.url("/portal")).send().await.unwrap());
    pages.push(b.get(app.url("/portal/pages/999/disconnect")).send().await.unwrap());
    pages.push(b.get(app.url("/api/auth/facebook/start?client=x&expires=1&sig=00")).send().await.unwrap());
    pages.push(b.get(app.url("/api/auth/facebook/data-deletion/status?code=NOPE")).send().await.unwrap());
    for resp in pages {
        let (url, h) = (resp.url().to_string(), resp.headers().clone());
        assert!(h["content-type"].to_str().unwrap().starts_with("text/html"), "{url}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{url}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("script-src"), "{url}: no script at all: {csp}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{url}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{url}");
        assert_eq!(h["cache-control"], "no-store", "{url}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("<script") && !body.contains(" style="), "{url}: nothing inline");
    }
    let css = b.get(app.url("/assets/switchboard.css")).send().await.unwrap();
    assert_eq!(css.headers()["content-type"], "text/css; charset=utf-8");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_user_without_a_client_never_sees_the_operator_view() {
    let app = spawn_app(Options::default()).await;
    // The database refuses such a user; the portal must refuse it too, should one ever exist.
    app.db.exec("ALTER TABLE users DROP CONSTRAINT IF EXISTS users_check").await;
    add_user(&app, "orphan@woodstock.example", Some(app.clients[0].id)).await;
    app.db.exec("UPDATE users SET client_id = NULL WHERE email = 'orphan@woodstock.example'").await;
    let b = browser();
    assert_eq!(sign_in(&app, &b, "orphan@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (status, html) = page(&app, &b, "/portal").await;
    assert_eq!(status, 403, "{html}");
    assert!(html.contains("not linked to a business") && !html.contains("All clients"), "{html}");
    let (status, _) = page(&app, &b, &format!("/portal/pages/{PAGE_A}/disconnect")).await;
    assert_eq!(status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invited_user_must_choose_a_password_and_the_role_has_no_default() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "op@switchboard.example", None).await;
    let op = browser();
    assert_eq!(sign_in(&app, &op, "op@switchboard.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &op, "/portal").await;
    let csrf = field(&home, "csrf");
    assert!(home.contains(r#"option value="" disabled selected"#), "the role has no default: {home}");
    let invite = |form: Vec<(&'static str, String)>| op.post(app.url("/portal/users")).form(&form).send();
    let with = |extra: &[(&'static str, &str)]| {
        let mut form = vec![("csrf", csrf.clone()), ("email", "new@woodstock.example".to_owned())];
        form.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        form
    };
    let resp = invite(with(&[("client", "woodstock-outlet")])).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "no role chosen: refused, not an operator");
    assert!(resp.text().await.unwrap().contains("Choose whether"));
    assert_eq!(invite(with(&[("role", "operator"), ("client", "woodstock-outlet")])).await.unwrap().status(), 400);
    assert_eq!(invite(with(&[("role", "client")])).await.unwrap().status(), 400);
    let shown = invite(with(&[("role", "client"), ("client", "woodstock-outlet")])).await.unwrap();
    assert_eq!(shown.headers()["cache-control"], "no-store", "the one-time password page is never cached");
    let shown = shown.text().await.unwrap();
    let one_time = shown.split("id=\"password\">").nth(1).unwrap().split('<').next().unwrap().to_owned();

    let newcomer = browser();
    let resp = sign_in(&app, &newcomer, "new@woodstock.example", &one_time).await;
    assert_eq!(location(&resp), "/portal/password", "first the password");
    let (status, _) = page(&app, &newcomer, "/portal").await;
    assert_eq!(status, 303, "nothing else until it is chosen");
    let (_, form) = page(&app, &newcomer, "/portal/password").await;
    let csrf = field(&form, "csrf");
    let set = |new: &str, repeat: &str| {
        newcomer
            .post(app.url("/portal/password"))
            .form(&[("csrf", csrf.as_str()), ("new", new), ("repeat", repeat)])
            .send()
    };
    assert_eq!(set("a brand new passphrase", "another passphrase!").await.unwrap().status(), 400);
    assert_eq!(set("short", "short").await.unwrap().status(), 400);
    let done = set("a brand new passphrase", "a brand new passphrase").await.unwrap();
    assert_eq!(done.status(), 303);
    let (status, html) = page(&app, &newcomer, &location(&done)).await;
    assert!(status == 200 && html.contains("Your password was changed."), "{status}: {html}");
    assert_eq!(sign_in(&app, &browser(), "new@woodstock.example", &one_time).await.status(), 401, "one time only");
    let user = app.db.store.user_by_email(&Email::parse("new@woodstock.example").unwrap()).await.unwrap().unwrap();
    assert!(!user.must_change_password && user.role == Role::Client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_and_deauthorize_change_only_what_they_checked() {
    let app = spawn_app(Options::default()).await;
    let (woodstock, rural_king) = (app.clients[0].id, app.clients[1].id);
    let page_a = PageId::parse(PAGE_A).unwrap();
    // Checked against Rural King, but the page is Woodstock's by the time the change is made.
    assert!(!app.db.store.revoke_integration(&page_a, "x", RevokeIf::OwnedBy(rural_king)).await.unwrap());
    assert!(!app.db.store.revoke_integration(&page_a, "x", RevokeIf::ConnectedBy("someone-else")).await.unwrap());
    assert_eq!(app.db.store.integration_by_page(&page_a).await.unwrap().unwrap().status, IntegrationStatus::Connected);
    let onboarding = &app.onboarding;
    let err = onboarding.disconnect(&page_a, Some(rural_king), Actor::Cli, "x").await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("changed hands")), "{err}");
    assert_eq!(app.db.store.integration_by_page(&page_a).await.unwrap().unwrap().status, IntegrationStatus::Connected);
    assert!(onboarding.disconnect(&page_a, Some(woodstock), Actor::Cli, "x").await.is_ok());
    assert_eq!(app.db.store.integration_by_page(&page_a).await.unwrap().unwrap().status, IntegrationStatus::Revoked);
    assert_eq!(
        app.db.store.integration_by_page(&PageId::parse(PAGE_B).unwrap()).await.unwrap().unwrap().status,
        IntegrationStatus::Connected
    );
}

/// A relay bot on loopback that answers with whatever `answer` makes of the request's path.
async fn bot(answer: fn(&str) -> warp::reply::Response) -> String {
    use warp::Filter as _;
    let route = warp::path::full().map(move |p: warp::path::FullPath| answer(p.as_str()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(warp::serve(route).incoming(listener).run());
    url
}

async fn failure_of(app: &TestApp, url: &str, mid: &str) -> String {
    let woodstock = &app.clients[0];
    let secret =
        app.keys.seal_relay_secret(woodstock.id, &SecretString::from("relay-secret-value".to_owned())).unwrap();
    app.db.store.set_responder(woodstock.id, &ResponderSetting::Relay { url: url.to_owned(), secret }).await.unwrap();
    app.router.disconnect(&PageId::parse(PAGE_A).unwrap());
    app.router.register(PageId::parse(PAGE_A).unwrap(), None, "woodstock-outlet");
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", mid, "hello", 1)).await.0, 200);
    let sql = format!("SELECT reason FROM webhook_inbox WHERE dedup_key = 'm:{mid}' AND status = 'failed'");
    eventually(&format!("{mid} failed"), || async { app.db.scalar(&sql).await.ok_or_else(|| "not failed".to_owned()) })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_answers_are_bounded_and_redirects_are_not_followed() {
    use warp::Reply as _;
    let app = spawn_app(Options::with(|s| {
        s.engine.relay.max_replies = 3;
        s.engine.relay.max_answer_bytes = 2048;
    }))
    .await;
    let url = bot(|path| match path {
        "/redirect" => {
            warp::redirect::found(warp::http::Uri::from_static("http://169.254.169.254/latest")).into_response()
        }
        "/huge" => warp::reply::json(&serde_json::json!({ "replies": ["x".repeat(4096)] })).into_response(),
        _ => warp::reply::json(&serde_json::json!({ "replies": ["1", "2", "3", "4"] })).into_response(),
    })
    .await;
    assert!(failure_of(&app, &format!("{url}/redirect"), "m_r1").await.contains("a redirect, which is not followed"));
    assert!(failure_of(&app, &format!("{url}/huge"), "m_r2").await.contains("larger than 2048 bytes"));
    assert!(failure_of(&app, &format!("{url}/many"), "m_r3").await.contains("4 replies; at most 3"));
    assert!(app.sent().is_empty(), "none of them was answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_calls_reach_no_private_address() {
    let app = spawn_app(Options::with(|s| s.engine.relay.allow_private = false)).await;
    let url = bot(|_| unreachable!("the bot must never be called")).await;
    assert!(failure_of(&app, &format!("{url}/bot"), "m_p1").await.contains("must be https"));
    let port = url.rsplit(':').next().unwrap();
    let reason = failure_of(&app, &format!("https://localhost:{port}/bot"), "m_p2").await;
    assert!(reason.contains("no public address"), "{reason}");
    assert!(
        failure_of(&app, "https://169.254.169.254/latest/meta-data", "m_p3").await.contains("not a public address")
    );
    assert!(app.sent().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_onboarding_link_names_the_business_first_and_its_result_page_cannot_be_guessed() {
    let app = fresh_app().await;
    let link = link_until(&app, "woodstock-outlet", switchboard::clock::now().timestamp() + 3600);
    // Whoever opens the link is told whose the Pages will be before anything happens; nothing is stored.
    let b = browser();
    let first = b.get(&link).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200);
    let html = first.text().await.unwrap();
    assert!(
        html.contains("You are connecting your Facebook Pages to <strong>Client woodstock-outlet</strong>"),
        "{html}"
    );
    assert_eq!(app.db.count("oauth_states").await, 0, "showing the page stores nothing");
    // The button only works from that page, in that browser: another browser, or a page elsewhere posting the
    // link's fields (its SameSite cookie stays behind), starts nothing.
    let fields = crate::support::login::hidden_fields(&html);
    for (who, other) in [("another browser", browser()), ("no cookie", reqwest::Client::new())] {
        let resp = other.post(app.url("/api/auth/facebook/start")).form(&fields).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{who}");
        assert!(resp.text().await.unwrap().contains("not continued from the page that names the business"), "{who}");
    }
    let forged: Vec<(String, String)> =
        fields.iter().map(|(k, v)| (k.clone(), if k == "shown" { "0".repeat(64) } else { v.clone() })).collect();
    assert_eq!(b.post(app.url("/api/auth/facebook/start")).form(&forged).send().await.unwrap().status().as_u16(), 403);
    assert_eq!(app.db.count("oauth_states").await, 0, "nothing was started");

    // Continued from the page: the dialog, then a result page that names the business too.
    let resp = b.post(app.url("/api/auth/facebook/start")).form(&fields).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let dialog = url::Url::parse(&location(&resp)).unwrap();
    let state = dialog.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned();
    let callback = decide(&b, &dialog, &[PAGE_A], "continue").await;
    let result = location(&b.get(&callback).send().await.unwrap());
    let page = b.get(app.url(&result)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Business: <strong>Client woodstock-outlet</strong>"), "{page}");
    // Whoever saw the dialog URL (its state) cannot derive the result page's address.
    let derived = format!("/portal/connect-result/{}", hex::encode(switchboard::secrets::tokens::hash(&state)));
    assert_ne!(result, derived);
    assert_eq!(b.get(app.url(&derived)).send().await.unwrap().status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starting_facebook_login_is_throttled_per_address_and_per_link() {
    let app = spawn_app(Options {
        connect: false,
        ..Options::with(|s| s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])
    })
    .await;
    crate::support::client(&app.db.store, "woodstock-outlet").await;
    let link = link_until(&app, "woodstock-outlet", switchboard::clock::now().timestamp() + 3600);
    let start_from = |xff: String| {
        let link = link.clone();
        async move {
            let b = reqwest::Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .default_headers([("x-forwarded-for".parse().unwrap(), xff.parse().unwrap())].into_iter().collect())
                .build()
                .unwrap();
            let resp = crate::support::login::press_continue(&b, &link).await.unwrap();
            (resp.status().as_u16(), resp.headers().get("retry-after").is_some())
        }
    };
    // One address: 10 starts a minute, then 429 with Retry-After.
    let mut from_one = Vec::new();
    for _ in 0..12 {
        from_one.push(start_from("203.0.113.7".to_owned()).await);
    }
    assert_eq!(from_one.iter().filter(|(s, _)| *s == 302).count(), 10, "{from_one:?}");
    assert!(from_one[10..].iter().all(|r| *r == (429, true)), "{from_one:?}");
    // One link, from many addresses: 20 an hour.
    let mut from_many = Vec::new();
    for i in 0..12 {
        from_many.push(start_from(format!("198.51.100.{i}")).await);
    }
    assert_eq!(from_many.iter().filter(|(s, _)| *s == 302).count(), 10, "the link had 10 starts left: {from_many:?}");
    assert_eq!(app.db.count("oauth_states").await, 20, "a state per start allowed, none beyond");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_flood_from_many_addresses_never_queues_ahead_of_the_owners_known_browser() {
    let app = spawn_app(Options::with(|s| s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()])).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    let owner = browser();
    assert_eq!(sign_in(&app, &owner, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let _ = owner.post(app.url("/portal/logout")).send().await;

    // 40 addresses, each guessing at an account of its own, so no per-address or per-account limit stops them:
    // every one costs a password check.
    let done = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let flood: Vec<_> = (0..40)
        .map(|i| {
            let (url, done) = (app.url("/portal/login"), done.clone());
            tokio::spawn(async move {
                let b = browser();
                let xff = format!("203.0.113.{i}");
                let page = b.get(&url).header("x-forwarded-for", &xff).send().await.unwrap().text().await.unwrap();
                let csrf = field(&page, "csrf");
                let email = format!("guess{i}@x.example");
                let form = [("csrf", csrf.as_str()), ("email", email.as_str()), ("password", "guess guess guess")];
                let status = b.post(&url).header("x-forwarded-for", &xff).form(&form).send().await.unwrap().status();
                done.lock().unwrap().push((std::time::Instant::now(), status.as_u16()));
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = sign_in(&app, &owner, "owner@woodstock.example", PASSWORD).await;
    let owner_done = std::time::Instant::now();
    assert_eq!(resp.status().as_u16(), 303, "the owner's known browser signs in");
    for f in flood {
        f.await.unwrap();
    }
    let done = done.lock().unwrap();
    let checked_before: usize = done.iter().filter(|(at, status)| *at < owner_done && *status == 401).count();
    // The owner's check ran in a lane of its own: at most the checks already running finished ahead of it.
    assert!(checked_before <= 6, "{checked_before} of the flood's password checks went before the owner's");
    let busy = done.iter().filter(|(_, status)| *status == 429).count();
    assert!(busy > 0, "beyond the waiting room, the flood is told to try again: {done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_pulling_portal_pages_in_a_loop_is_slowed_and_others_are_not() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    add_user(&app, "other@woodstock.example", Some(app.clients[0].id)).await;
    let (script, person) = (browser(), browser());
    assert_eq!(sign_in(&app, &script, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    assert_eq!(sign_in(&app, &person, "other@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let path = format!("/portal/pages/{PAGE_A}/conversations");
    let mut statuses = Vec::new();
    for _ in 0..60 {
        let resp = script.get(app.url(&path)).send().await.unwrap();
        if resp.status().as_u16() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
        }
        statuses.push(resp.status().as_u16());
    }
    let slowed = statuses.iter().filter(|s| **s == 429).count();
    assert!(slowed > 0 && statuses[..20].iter().all(|s| *s == 200), "a burst of 20, then slowed: {statuses:?}");
    assert_eq!(page(&app, &person, &path).await.0, 200, "another session is not slowed");
}
