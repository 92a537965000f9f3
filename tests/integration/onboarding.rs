//! Onboarding through Facebook Login against the Meta stand-in: the link, the consent page, the callback,
//! what lands in PostgreSQL, and Meta's deauthorize and data-deletion callbacks.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::domain::{ClientSlug, PageId};
use switchboard::onboarding::OnboardLinks;
use switchboard::secrets::tokens::hash as state_hash;
use switchboard::store::IntegrationStatus;

use crate::app::{IG_A, Options, PAGE_A, PAGE_B, SECRET, TestApp, spawn_app, text_event};
use crate::support::{client, eventually};

const ALL_SCOPES: &[&str] = meta_sim::config::KNOWN_SCOPES;

fn link(app: &TestApp, slug: &str, expires_in: i64) -> String {
    link_until(app, slug, switchboard::clock::now().timestamp() + expires_in)
}

/// An onboarding link for `slug`, valid until `expires` (unix seconds).
pub(crate) fn link_until(app: &TestApp, slug: &str, expires: i64) -> String {
    let links = OnboardLinks::new(&SecretString::from(SECRET.to_owned()));
    app.url(&format!("/api/auth/facebook/start?{}", links.sign(&ClientSlug::parse(slug).unwrap(), expires)))
}

pub(crate) fn location(resp: &reqwest::Response) -> String {
    resp.headers().get("location").expect("a redirect").to_str().unwrap().to_owned()
}

/// The person's side of the login: open the link, read the consent page, press a button with these
/// permissions ticked. Returns the callback URL the dialog redirects to.
async fn consent(app: &TestApp, start: &str, scopes: &[&str], decision: &str) -> String {
    let first = app.http.get(start).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 200, "the link shows whose the Pages will be first");
    let page = first.text().await.unwrap();
    assert!(page.contains("You are connecting your Facebook Pages to <strong>Client "), "{page}");
    let resp = crate::support::login::press_continue(&app.http, start).await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "its button goes on to the dialog");
    let dialog = url::Url::parse(&location(&resp)).unwrap();
    assert!(dialog.as_str().starts_with(&format!("{}/v25.0/dialog/oauth", app.meta.url())), "{dialog}");
    let q: std::collections::HashMap<String, String> = dialog.query_pairs().into_owned().collect();
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], app.url("/api/auth/facebook/callback"));
    assert!(q["state"].len() >= 43, "at least 256 bits of state");
    let page = app.http.get(dialog.as_str()).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Woodstock Outlet") && page.contains("Continue as"), "the consent page lists the pages");

    crate::app::decide_with(&app.http, &dialog, &[PAGE_A, PAGE_B], Some(scopes), decision).await
}

/// Follows the callback to the result page: (callback status, result page HTML).
async fn land(app: &TestApp, callback: &str) -> (u16, String) {
    let resp = app.http.get(callback).send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 302 {
        return (status, resp.text().await.unwrap());
    }
    let result = location(&resp);
    assert!(result.starts_with("/portal/connect-result/"), "{result}");
    assert!(!result.contains("EAA"), "no token in any URL");
    let page = app.http.get(app.url(&result)).send().await.unwrap();
    assert_eq!(page.status().as_u16(), 200);
    (302, page.text().await.unwrap())
}

async fn onboard(app: &TestApp, slug: &str, scopes: &[&str]) -> String {
    let callback = consent(app, &link(app, slug, 3600), scopes, "continue").await;
    let (status, page) = land(app, &callback).await;
    assert_eq!(status, 302, "{page}");
    page
}

pub(crate) async fn fresh_app() -> TestApp {
    let app = spawn_app(Options { connect: false, ..Options::default() }).await;
    client(&app.db.store, "woodstock-outlet").await;
    client(&app.db.store, "rural-king").await;
    app
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_flow_connects_pages_encrypted_and_subscribed_and_the_first_webhook_is_answered() {
    let app = fresh_app().await;
    let page = onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    assert!(page.contains("Your Facebook connection is set up"), "{page}");
    assert!(page.contains("Woodstock Outlet") && page.contains("Rural King") && page.contains(IG_A), "{page}");

    let rows = app.db.store.list_integrations().await.unwrap();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(row.client_slug.as_str(), "woodstock-outlet");
        assert_eq!(row.status, IntegrationStatus::Connected);
        assert!(row.permissions_granted.contains(&"pages_messaging".to_owned()));
        assert_eq!(row.token_expires_at, None, "page tokens from a long-lived user token do not expire");
        assert_eq!(row.connected_by.as_deref(), Some("10215241773831025"));
        assert!(row.sealed_token.is_some());
    }
    let a = rows.iter().find(|r| r.page_id.as_str() == PAGE_A).unwrap();
    assert_eq!(a.instagram_account_id.as_ref().map(PageId::as_str), Some(IG_A));
    app.db.store.close().await;
    let dump = app.db.raw_integration_bytes().await;
    assert!(!dump.windows(4).any(|w| w == b"EAAP"), "no page token in the table's bytes");

    let subscriptions = app.meta.sim().subscriptions();
    assert!(subscriptions[PAGE_A].contains(&"messages".to_owned()));
    assert!(subscriptions.contains_key(PAGE_B));

    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_first", "hello", 1)).await.0, 200);
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].page_id, PAGE_A, "answered with the new token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_connects_nothing_and_says_so() {
    let app = fresh_app().await;
    let callback = consent(&app, &link(&app, "woodstock-outlet", 3600), ALL_SCOPES, "cancel").await;
    assert!(callback.contains("error=access_denied"));
    let (status, page) = land(&app, &callback).await;
    assert_eq!(status, 302);
    assert!(page.contains("You cancelled the Facebook sign-in, so nothing was connected."), "{page}");
    assert!(page.contains("Connect with Facebook again"));
    assert!(app.db.store.list_integrations().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_expired_and_forged_states_are_refused_with_nothing_stored() {
    let app = fresh_app().await;
    let callback = consent(&app, &link(&app, "woodstock-outlet", 3600), ALL_SCOPES, "continue").await;
    assert_eq!(land(&app, &callback).await.0, 302);
    let before = app.db.store.list_integrations().await.unwrap();

    let (status, page) = land(&app, &callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("already used"), "{page}");

    let forged = callback.replace("state=", "state=x");
    let (status, page) = land(&app, &forged).await;
    assert_eq!(status, 400);
    assert!(page.contains("not known to us"), "{page}");

    let expired_state = "an-expired-state-value-with-enough-entropy-1234";
    let wo = app.db.store.client_by_slug(&ClientSlug::parse("woodstock-outlet").unwrap()).await.unwrap().unwrap();
    let past = switchboard::clock::now() - chrono::Duration::seconds(1);
    app.db
        .store
        .create_oauth_state(&switchboard::store::NewOAuthState {
            state_hash: state_hash(expired_state),
            client_id: wo.id,
            user_id: None,
            expires_at: past,
            browser_hash: state_hash("some browser"),
            link_expires_at: None,
        })
        .await
        .unwrap();
    let (status, page) =
        land(&app, &app.url(&format!("/api/auth/facebook/callback?code=abc&state={expired_state}"))).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired"), "{page}");

    let (status, _) = land(&app, &app.url("/api/auth/facebook/callback?code=abc")).await;
    assert_eq!(status, 400);
    assert_eq!(app.db.store.list_integrations().await.unwrap(), before, "nothing was stored by the refused callbacks");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_permission_connects_nothing_and_names_it() {
    let app = fresh_app().await;
    let scopes: Vec<&str> = ALL_SCOPES.iter().copied().filter(|s| *s != "pages_messaging").collect();
    let page = onboard(&app, "woodstock-outlet", &scopes).await;
    assert!(page.contains("permissions are missing") && page.contains("pages_messaging"), "{page}");
    assert!(page.contains("rerequest=1"), "the retry asks Facebook for the declined permission again");
    assert!(app.db.store.list_integrations().await.unwrap().is_empty());
    assert!(app.meta.sim().subscriptions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_connected_to_another_client_is_refused_and_left_untouched() {
    let app = fresh_app().await;
    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let before = app.db.store.list_integrations().await.unwrap();
    let page = onboard(&app, "rural-king", ALL_SCOPES).await;
    assert!(page.contains("Nothing was connected") && page.contains("already connected to another business"), "{page}");
    assert_eq!(app.db.store.list_integrations().await.unwrap(), before, "the owner's rows are untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnecting_after_needs_reauth_updates_the_row_in_place() {
    let app = fresh_app().await;
    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let page = PageId::parse(PAGE_A).unwrap();
    let before = app.db.store.integration_by_page(&page).await.unwrap().unwrap();
    app.db.store.set_integration_status(&page, IntegrationStatus::NeedsReauth, Some("190/460"), None).await.unwrap();
    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let after = app.db.store.integration_by_page(&page).await.unwrap().unwrap();
    assert_eq!(after.id, before.id);
    assert_eq!((after.status, after.status_reason), (IntegrationStatus::Connected, None));
    assert_ne!(after.sealed_token, before.sealed_token, "the new token replaced the old one");
    assert_eq!(app.db.store.list_integrations().await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_links_are_refused_with_a_clear_page_and_nothing_stored() {
    let app = fresh_app().await;
    let good = link(&app, "woodstock-outlet", 3600);
    let tampered = good.replace("client=woodstock-outlet", "client=rural-king");
    for (url, status, needle) in [
        (tampered, 403, "not valid"),
        (link(&app, "woodstock-outlet", -10), 403, "expired"),
        (link(&app, "nobody-here", 3600), 400, "no business"),
        (app.url("/api/auth/facebook/start"), 403, "incomplete"),
    ] {
        let resp = app.http.get(&url).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), status, "{url}");
        assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
        assert!(resp.text().await.unwrap().contains(needle), "{url}");
    }
    assert_eq!(app.db.count("oauth_states").await, 0, "no state was created for a bad link");
    let resp = crate::support::login::press_continue(&app.http, &good).await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "the genuine link still works");
}

fn signed(payload: Value, secret: &str) -> String {
    switchboard::meta::signed_request::sign(&payload, secret)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deauthorize_verifies_the_signed_request_and_revokes_that_users_pages() {
    let app = fresh_app().await;
    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let post = |body: String| {
        app.http.post(app.url("/api/auth/facebook/deauthorize")).form(&[("signed_request", body)]).send()
    };

    let tampered = signed(json!({"algorithm":"HMAC-SHA256","user_id":"10215241773831025"}), "not-the-app-secret");
    let resp = post(tampered).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("signature"));
    let wrong_alg = signed(json!({"algorithm":"none","user_id":"10215241773831025"}), SECRET);
    assert_eq!(post(wrong_alg).await.unwrap().status().as_u16(), 400);
    assert!(app.db.store.list_integrations().await.unwrap().iter().all(|i| i.status == IntegrationStatus::Connected));

    let now = switchboard::clock::now().timestamp();
    let stale = signed(json!({"algorithm":"HMAC-SHA256","issued_at":now - 7200,"user_id":"10215241773831025"}), SECRET);
    let resp = post(stale).await.unwrap();
    assert_eq!(resp.status().as_u16(), 400, "a request issued two hours ago is refused");
    assert!(resp.text().await.unwrap().contains("too long ago"));
    assert!(app.db.store.list_integrations().await.unwrap().iter().all(|i| i.status == IntegrationStatus::Connected));

    let genuine = signed(json!({"algorithm":"HMAC-SHA256","issued_at":now,"user_id":"10215241773831025"}), SECRET);
    assert_eq!(post(genuine.clone()).await.unwrap().status().as_u16(), 200);
    for row in app.db.store.list_integrations().await.unwrap() {
        assert_eq!(row.status, IntegrationStatus::Revoked);
        assert!(row.sealed_token.is_none(), "the token is erased");
    }
    // A replay changes nothing and adds no row.
    let audit = app.db.count("audit_log").await;
    assert_eq!(post(genuine).await.unwrap().status().as_u16(), 200);
    assert_eq!(app.db.count("audit_log").await, audit, "the replay wrote nothing");
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7001", "m_after", "hi", 1)).await.0, 200);
    assert!(app.settle().await.is_empty(), "a revoked page is not answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_deletion_answers_a_status_url_and_confirmation_code() {
    let app = fresh_app().await;
    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let now = switchboard::clock::now().timestamp();
    let body = signed(json!({"algorithm":"HMAC-SHA256","issued_at":now,"user_id":"10215241773831025"}), SECRET);
    let post = |body: String| {
        app.http.post(app.url("/api/auth/facebook/data-deletion")).form(&[("signed_request", body)]).send()
    };
    let resp = post(body.clone()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let answer: Value = resp.json().await.unwrap();
    let keys: Vec<&String> = answer.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["confirmation_code", "url"], "exactly Meta's documented fields");
    let code = answer["confirmation_code"].as_str().unwrap();
    assert!(code.chars().all(|c| c.is_ascii_alphanumeric()) && code.len() >= 10);
    let status = app.http.get(answer["url"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(status.status().as_u16(), 200);
    let html = status.text().await.unwrap();
    assert!(html.contains(code) && html.contains("Completed"), "{html}");
    let rows = app.db.store.list_integrations().await.unwrap();
    assert!(rows.iter().all(|r| r.connected_by.is_none() && r.status == IntegrationStatus::Revoked));
    let resp = app.http.get(app.url("/api/auth/facebook/data-deletion/status?code=NOPE")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // Meta sending the same request again gets the same answer, and nothing is added or changed.
    let (requests, audit) = (app.db.count("data_deletion_requests").await, app.db.count("audit_log").await);
    let again: Value = post(body).await.unwrap().json().await.unwrap();
    assert_eq!(again, answer, "the same confirmation code");
    assert_eq!(app.db.count("data_deletion_requests").await, requests, "no second deletion request");
    assert_eq!(app.db.count("audit_log").await, audit, "no audit row either");
    let no_time = signed(json!({"algorithm":"HMAC-SHA256","user_id":"10215241773831025"}), SECRET);
    assert_eq!(post(no_time).await.unwrap().status().as_u16(), 400, "a request without issued_at is refused");
}

/// Meta may send one signed_request payload (same user, same second) to both callbacks: each is handled, in
/// either order, and each one's replay is still a replay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_payload_sent_to_both_callbacks_is_handled_by_each_in_either_order() {
    for deletion_first in [false, true] {
        let app = fresh_app().await;
        onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
        let now = switchboard::clock::now().timestamp();
        let body = signed(json!({"algorithm":"HMAC-SHA256","issued_at":now,"user_id":"10215241773831025"}), SECRET);
        let post = |path: &'static str| {
            let request = app.http.post(app.url(path)).form(&[("signed_request", body.clone())]);
            async move {
                let resp = request.send().await.unwrap();
                (resp.status().as_u16(), resp.text().await.unwrap())
            }
        };
        let (deauthorize, deletion) = ("/api/auth/facebook/deauthorize", "/api/auth/facebook/data-deletion");
        let order = if deletion_first { [deletion, deauthorize] } else { [deauthorize, deletion] };
        let mut code = None;
        for path in order.into_iter().chain(order) {
            let (status, text) = post(path).await;
            assert_eq!(status, 200, "{path} (deletion first: {deletion_first}): {text}");
            if path == deletion {
                let answer: Value = serde_json::from_str(&text).unwrap();
                let this = answer["confirmation_code"].as_str().unwrap().to_owned();
                assert_eq!(*code.get_or_insert(this.clone()), this, "a replay gets the same confirmation code");
            }
        }
        assert_eq!(app.db.count("data_deletion_requests").await, 1, "one deletion request");
        let rows = app.db.store.list_integrations().await.unwrap();
        assert!(rows.iter().all(|r| r.connected_by.is_none() && r.status == IntegrationStatus::Revoked));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_check_disconnect_and_send_links_from_the_cli() {
    use std::process::{Command, Stdio};

    let app =
        spawn_app(Options { connect: false, ..Options::with(|s| s.oauth.reconcile_interval = Duration::from_secs(1)) })
            .await;
    client(&app.db.store, "woodstock-outlet").await;
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .current_dir(dir.path())
            .env_clear()
            .env("DATABASE_URL", &app.db.url)
            .env("SWITCHBOARD_ENCRYPTION_KEYS", &app.key_entry)
            .env("SWITCHBOARD_PUBLIC_URL", app.url(""))
            .env("META_APP_ID", "1234567890")
            .env("META_APP_SECRET", SECRET)
            .env("META_VERIFY_TOKEN", "vt")
            .env("META_GRAPH_URL", app.meta.url())
            .env("META_OAUTH_DIALOG_URL", app.meta.url())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };

    let (code, link, err) = cli(&["client", "onboard-link", "woodstock-outlet", "--ttl", "1h"]);
    assert_eq!(code, Some(0), "{err}");
    let resp = crate::support::login::press_continue(&app.http, link.trim()).await.unwrap();
    assert_eq!(resp.status().as_u16(), 302, "the printed link starts the login");
    assert_eq!(cli(&["client", "onboard-link", "woodstock-outlet", "--ttl", "0s"]).0, Some(2));
    assert_eq!(cli(&["client", "onboard-link", "nobody", "--ttl", "1h"]).0, Some(2));

    onboard(&app, "woodstock-outlet", ALL_SCOPES).await;
    let (code, out, err) = cli(&["integration", "check"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.matches("healthy").count(), 2, "{out}");

    app.meta.sim().drop_subscription(PAGE_B);
    let (code, out, _) = cli(&["integration", "check", PAGE_B]);
    assert_eq!((code, out.contains("subscribed again")), (Some(0), true), "{out}");
    assert!(app.meta.sim().subscriptions().contains_key(PAGE_B), "Meta's lost subscription was restored");

    app.meta.sim().invalidate_page_tokens(PAGE_A, 460);
    let (code, out, err) = cli(&["integration", "check"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("needs reconnection") && err.lines().count() == 1, "{out}{err}");
    let a = app.db.store.integration_by_page(&PageId::parse(PAGE_A).unwrap()).await.unwrap().unwrap();
    assert_eq!(a.status, IntegrationStatus::NeedsReauth);

    let (code, out, err) = cli(&["integration", "disconnect", PAGE_B]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("disconnected"), "{out}");
    assert!(!app.meta.sim().subscriptions().contains_key(PAGE_B), "unsubscribed at Meta");
    let b = app.db.store.integration_by_page(&PageId::parse(PAGE_B).unwrap()).await.unwrap().unwrap();
    assert_eq!((b.status, b.sealed_token.is_none()), (IntegrationStatus::Revoked, true));
    assert_eq!(cli(&["integration", "disconnect", "999"]).0, Some(2));
    assert_eq!(cli(&["integration", "disconnect", "not-a-page"]).0, Some(2));

    // The running server learns of the CLI's disconnect and stops answering page B.
    eventually("the server saw the disconnect", || async {
        if app.router.route(PAGE_B).is_none() { Ok(()) } else { Err("page B still routed".to_owned()) }
    })
    .await;
    let audit: Vec<String> = app.db.store.recent_audit(20).await.unwrap().into_iter().map(|a| a.action).collect();
    for action in
        ["integration.disconnected", "integration.needs_reauth", "integration.resubscribed", "client.onboard_link"]
    {
        assert!(audit.iter().any(|a| a == action), "{action} not audited: {audit:?}");
    }
}
