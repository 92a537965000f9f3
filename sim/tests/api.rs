//! The stand-in's behaviour over real HTTP on 127.0.0.1, as Switchboard and its tests will meet it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use meta_sim::{SimConfig, SimHandle};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "fixture-app-secret-do-not-use";
const REDIRECT: &str = "http://127.0.0.1:1/api/auth/facebook/callback";
const PAGE_A: &str = "104711112233445";
const PAGE_B: &str = "209822223344556";
const IG_A: &str = "17841405822304914";
const SCOPES: &str = "pages_show_list,pages_messaging,pages_manage_metadata,pages_read_engagement,instagram_basic,instagram_manage_messages,business_management";

struct Meta {
    handle: SimHandle,
    http: reqwest::Client,
}

impl Meta {
    async fn start(config: SimConfig) -> Self {
        let handle = meta_sim::spawn(SimConfig { redirect_uris: vec![REDIRECT.to_owned()], ..config }).await.unwrap();
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { handle, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v25.0/{path}", self.handle.url())
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).query(query).send().await.unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// Runs the dialog: the person ticks `scopes` and `pages` and presses `decision`. Returns the Location.
    async fn consent(&self, scopes: &[&str], pages: &[&str], decision: &str) -> url::Url {
        let mut form: Vec<(&str, &str)> = vec![
            ("client_id", "1234567890"),
            ("redirect_uri", REDIRECT),
            ("state", "st4te-with/odd=chars"),
            ("requested", SCOPES),
            ("decision", decision),
        ];
        form.extend(scopes.iter().map(|s| ("scope", *s)));
        form.extend(pages.iter().map(|p| ("page", *p)));
        let resp = self.http.post(self.url("dialog/oauth/decide")).form(&form).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 302);
        url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap()
    }

    /// The whole login: consent to everything, exchange the code, then for a long-lived token.
    async fn long_lived_token(&self, scopes: &[&str]) -> String {
        let location = self.consent(scopes, &[PAGE_A, PAGE_B], "continue").await;
        let code = param(&location, "code").unwrap();
        let (status, short) = self
            .get(
                "oauth/access_token",
                &[("client_id", "1234567890"), ("client_secret", SECRET), ("redirect_uri", REDIRECT), ("code", &code)],
            )
            .await;
        assert_eq!(status, 200, "{short}");
        let short = short["access_token"].as_str().unwrap().to_owned();
        let (_, long) = self
            .get(
                "oauth/access_token",
                &[
                    ("grant_type", "fb_exchange_token"),
                    ("client_id", "1234567890"),
                    ("client_secret", SECRET),
                    ("fb_exchange_token", &short),
                ],
            )
            .await;
        long["access_token"].as_str().unwrap().to_owned()
    }

    /// Page tokens by page id, from /me/accounts.
    async fn page_tokens(&self, user_token: &str) -> Vec<(String, String)> {
        let proof = proof(user_token);
        let (status, accounts) =
            self.get("me/accounts", &[("access_token", user_token), ("appsecret_proof", &proof)]).await;
        assert_eq!(status, 200, "{accounts}");
        accounts["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["id"].as_str().unwrap().to_owned(), p["access_token"].as_str().unwrap().to_owned()))
            .collect()
    }

    async fn send(&self, path: &str, token: &str, body: Value) -> (u16, Value, Option<Value>) {
        let proof = proof(token);
        let resp = self
            .http
            .post(self.url(path))
            .query(&[("access_token", token), ("appsecret_proof", &proof)])
            .json(&body)
            .send()
            .await
            .unwrap();
        let usage =
            resp.headers().get("x-business-use-case-usage").map(|h| serde_json::from_str(h.to_str().unwrap()).unwrap());
        (resp.status().as_u16(), resp.json().await.unwrap(), usage)
    }

    async fn control(&self, path: &str, body: Value) -> Value {
        let resp = self.http.post(format!("{}/_sim/{path}", self.handle.url())).json(&body).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        resp.json().await.unwrap()
    }
}

fn param(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `appsecret_proof`, computed here with the RustCrypto primitives rather than the code under test.
fn proof(token: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(token.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

fn all_scopes() -> Vec<&'static str> {
    SCOPES.split(',').collect()
}

fn text(psid: &str, body: &str) -> Value {
    json!({ "recipient": { "id": psid }, "messaging_type": "RESPONSE", "message": { "text": body } })
}

#[tokio::test]
async fn consent_page_lists_pages_and_rejects_unknown_apps_and_redirects() {
    let meta = Meta::start(SimConfig::default()).await;
    let query = [
        ("client_id", "1234567890"),
        ("redirect_uri", REDIRECT),
        ("state", "abc"),
        ("response_type", "code"),
        ("scope", SCOPES),
    ];
    let resp = meta.http.get(meta.url("dialog/oauth")).query(&query).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let html = resp.text().await.unwrap();
    for needle in ["Woodstock Outlet", "Rural King", "Continue as Pat Tester", "Cancel", "pages_messaging", IG_A] {
        assert!(html.contains(needle), "{needle} missing from the consent page");
    }

    let wrong_app = [("client_id", "999"), ("redirect_uri", REDIRECT)];
    let resp = meta.http.get(meta.url("dialog/oauth")).query(&wrong_app).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("Invalid App ID"));
    let wrong_redirect = [("client_id", "1234567890"), ("redirect_uri", "http://evil.example/cb")];
    let resp = meta.http.get(meta.url("dialog/oauth")).query(&wrong_redirect).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.text().await.unwrap().contains("not whitelisted"));
}

#[tokio::test]
async fn continue_and_cancel_redirect_back_with_the_state_unchanged() {
    let meta = Meta::start(SimConfig::default()).await;
    let ok = meta.consent(&all_scopes(), &[PAGE_A], "continue").await;
    assert!(ok.as_str().starts_with(REDIRECT));
    assert_eq!(param(&ok, "state").as_deref(), Some("st4te-with/odd=chars"));
    assert!(param(&ok, "code").is_some_and(|c| c.len() > 20));

    let cancel = meta.consent(&all_scopes(), &[PAGE_A], "cancel").await;
    assert_eq!(param(&cancel, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&cancel, "error_reason").as_deref(), Some("user_denied"));
    assert!(param(&cancel, "error_description").is_some());
    assert_eq!(param(&cancel, "state").as_deref(), Some("st4te-with/odd=chars"));
    assert_eq!(param(&cancel, "code"), None);
}

#[tokio::test]
async fn codes_are_single_use_and_checked_against_secret_and_redirect_uri() {
    let meta = Meta::start(SimConfig::default()).await;
    let code = param(&meta.consent(&all_scopes(), &[PAGE_A], "continue").await, "code").unwrap();
    let exchange = |secret: &'static str, redirect: &'static str, code: String| {
        let meta = &meta;
        async move {
            meta.get(
                "oauth/access_token",
                &[("client_id", "1234567890"), ("client_secret", secret), ("redirect_uri", redirect), ("code", &code)],
            )
            .await
        }
    };
    let (status, body) = exchange("wrong-secret", REDIRECT, code.clone()).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(1)));
    let (status, body) = exchange(SECRET, "http://127.0.0.1:1/other", code.clone()).await;
    assert_eq!((status, body["error"]["error_subcode"].as_u64()), (400, Some(36_008)));
    let (status, body) = exchange(SECRET, REDIRECT, code.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    let (status, body) = exchange(SECRET, REDIRECT, code).await;
    assert_eq!((status, body["error"]["error_subcode"].as_u64()), (400, Some(36_009)), "a replayed code fails");

    let expired = Meta::start(SimConfig { code_ttl_secs: 0, ..SimConfig::default() }).await;
    let code = param(&expired.consent(&all_scopes(), &[PAGE_A], "continue").await, "code").unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (_, body) = expired
        .get(
            "oauth/access_token",
            &[("client_id", "1234567890"), ("client_secret", SECRET), ("redirect_uri", REDIRECT), ("code", &code)],
        )
        .await;
    assert_eq!(body["error"]["error_subcode"].as_u64(), Some(36_007));
}

#[tokio::test]
async fn tokens_pages_and_scopes_are_reported_like_meta() {
    let meta = Meta::start(SimConfig { accounts_page_size: 1, ..SimConfig::default() }).await;
    let user = meta.long_lived_token(&all_scopes()).await;
    let app_token = format!("1234567890|{SECRET}");

    let (_, debug) = meta.get("debug_token", &[("input_token", &user), ("access_token", &app_token)]).await;
    let data = &debug["data"];
    assert_eq!(data["is_valid"], true);
    assert_eq!(data["type"], "USER");
    assert_eq!(data["user_id"], "10215241773831025");
    assert!(data["expires_at"].as_i64().unwrap() > meta_now() + 59 * 86_400, "long-lived: about 60 days");
    assert_eq!(data["scopes"].as_array().unwrap().len(), 7);
    let granular = data["granular_scopes"].as_array().unwrap();
    let messaging = granular.iter().find(|g| g["scope"] == "pages_messaging").unwrap();
    assert_eq!(messaging["target_ids"], json!([PAGE_A, PAGE_B]));

    // Paging: one Page per answer, follow the cursor.
    let p = proof(&user);
    let (_, first) = meta.get("me/accounts", &[("access_token", &user), ("appsecret_proof", &p)]).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 1);
    assert!(first["paging"]["next"].is_string());
    let after = first["paging"]["cursors"]["after"].as_str().unwrap();
    let (_, second) =
        meta.get("me/accounts", &[("access_token", &user), ("appsecret_proof", &p), ("after", after)]).await;
    assert_eq!(second["data"][0]["id"], PAGE_B);
    assert!(second["paging"].get("next").is_none(), "no next on the last page");
    let page_token = first["data"][0]["access_token"].as_str().unwrap();
    assert_eq!(first["data"][0]["id"], PAGE_A);

    let (_, debug) = meta.get("debug_token", &[("input_token", page_token), ("access_token", &app_token)]).await;
    assert_eq!(
        (debug["data"]["type"].as_str(), debug["data"]["expires_at"].as_i64()),
        (Some("PAGE"), Some(0)),
        "page tokens never expire"
    );

    let (_, fields) = meta
        .get(PAGE_A, &[("fields", "instagram_business_account"), ("access_token", &user), ("appsecret_proof", &p)])
        .await;
    assert_eq!(fields, json!({ "id": PAGE_A, "instagram_business_account": { "id": IG_A } }));
    let (_, fields) = meta
        .get(PAGE_B, &[("fields", "instagram_business_account"), ("access_token", &user), ("appsecret_proof", &p)])
        .await;
    assert_eq!(fields, json!({ "id": PAGE_B }));

    let (status, _) = meta.get("debug_token", &[("input_token", &user), ("access_token", "1234567890|wrong")]).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn unticked_permission_is_declined_everywhere() {
    let meta = Meta::start(SimConfig::default()).await;
    let scopes: Vec<&str> = all_scopes().into_iter().filter(|s| *s != "pages_messaging").collect();
    let user = meta.long_lived_token(&scopes).await;
    let p = proof(&user);
    let (_, perms) = meta.get("me/permissions", &[("access_token", &user), ("appsecret_proof", &p)]).await;
    let declined: Vec<&Value> =
        perms["data"].as_array().unwrap().iter().filter(|x| x["status"] == "declined").collect();
    assert_eq!(declined.len(), 1);
    assert_eq!(declined[0]["permission"], "pages_messaging");

    let tokens = meta.page_tokens(&user).await;
    let (status, body, _) =
        meta.send(&format!("{PAGE_A}/messages"), &tokens[0].1, text("7001234567890123", "hi")).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (403, Some(230)), "no pages_messaging, no sending");
}

#[tokio::test]
async fn subscriptions_need_the_pages_own_token_and_known_fields() {
    let meta = Meta::start(SimConfig::default()).await;
    let user = meta.long_lived_token(&all_scopes()).await;
    let tokens = meta.page_tokens(&user).await;
    let (token_a, token_b) = (&tokens[0].1, &tokens[1].1);
    let call = |method: reqwest::Method, page: &str, token: &str, fields: Option<&str>| {
        let mut query =
            vec![("access_token".to_owned(), token.to_owned()), ("appsecret_proof".to_owned(), proof(token))];
        if let Some(f) = fields {
            query.push(("subscribed_fields".to_owned(), f.to_owned()));
        }
        meta.http.request(method, meta.url(&format!("{page}/subscribed_apps"))).query(&query).send()
    };
    let resp = call(reqwest::Method::POST, PAGE_A, token_a, Some("messages,messaging_postbacks,message_echoes"))
        .await
        .unwrap();
    assert_eq!(resp.json::<Value>().await.unwrap(), json!({ "success": true }));
    let got: Value = call(reqwest::Method::GET, PAGE_A, token_a, None).await.unwrap().json().await.unwrap();
    assert_eq!(got["data"][0]["id"], "1234567890");
    assert_eq!(got["data"][0]["subscribed_fields"], json!(["messages", "messaging_postbacks", "message_echoes"]));

    let wrong_page = call(reqwest::Method::POST, PAGE_A, token_b, Some("messages")).await.unwrap();
    assert_eq!(wrong_page.status().as_u16(), 404);
    let ig_field = call(reqwest::Method::POST, PAGE_B, token_b, Some("messages,messaging_seen")).await.unwrap();
    let body: Value = ig_field.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("messaging_seen"));

    assert_eq!(call(reqwest::Method::DELETE, PAGE_A, token_a, None).await.unwrap().status().as_u16(), 200);
    let got: Value = call(reqwest::Method::GET, PAGE_A, token_a, None).await.unwrap().json().await.unwrap();
    assert_eq!(got["data"], json!([]));
    assert!(meta.handle.sim().subscriptions().is_empty());
}

#[tokio::test]
async fn send_api_checks_token_page_proof_limits_and_recipients() {
    let meta = Meta::start(SimConfig::default()).await;
    let user = meta.long_lived_token(&all_scopes()).await;
    let tokens = meta.page_tokens(&user).await;
    let token_a = tokens[0].1.clone();
    let psid = "7001234567890123";

    let (status, body, usage) = meta.send("me/messages", &token_a, text(psid, "Hello!")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["recipient_id"], psid);
    assert!(body["message_id"].as_str().unwrap().starts_with("m_"));
    assert_eq!(usage.unwrap()[PAGE_A][0]["type"], "messenger");

    // Proofs: missing, wrong, and the time-stamped form.
    let url = meta.url(&format!("{PAGE_A}/messages"));
    let no_proof =
        meta.http.post(&url).query(&[("access_token", &token_a)]).json(&text(psid, "x")).send().await.unwrap();
    assert_eq!(no_proof.json::<Value>().await.unwrap()["error"]["code"], 100);
    let bad = meta
        .http
        .post(&url)
        .query(&[("access_token", token_a.as_str()), ("appsecret_proof", "00ff")])
        .json(&text(psid, "x"))
        .send()
        .await
        .unwrap();
    assert!(bad.json::<Value>().await.unwrap()["error"]["message"].as_str().unwrap().contains("appsecret_proof"));
    let t = meta_now().to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{token_a}|{t}").as_bytes());
    let timed = hex::encode(mac.finalize().into_bytes());
    let ok = meta
        .http
        .post(&url)
        .query(&[("access_token", token_a.as_str()), ("appsecret_proof", &timed), ("appsecret_time", &t)])
        .json(&text(psid, "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status().as_u16(), 200);

    // Page A's token on page B.
    let (status, body, _) = meta.send(&format!("{PAGE_B}/messages"), &token_a, text(psid, "x")).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (404, Some(100)));

    // Text limits: Messenger under 2000 characters; Instagram at most 1000 bytes.
    let (status, _, _) = meta.send("me/messages", &token_a, text(psid, &"é".repeat(1999))).await;
    assert_eq!(status, 200);
    let (status, body, _) = meta.send("me/messages", &token_a, text(psid, &"a".repeat(2000))).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (400, Some(100)));
    let igsid = "6543210987654321";
    meta.handle.sim().register_instagram_users([igsid]);
    let (status, _, usage) = meta.send(&format!("{PAGE_A}/messages"), &token_a, text(igsid, &"é".repeat(500))).await;
    assert_eq!(status, 200);
    assert_eq!(usage.unwrap()[IG_A][0]["type"], "instagram");
    let (status, _, _) =
        meta.send(&format!("{PAGE_A}/messages"), &token_a, text(igsid, &format!("{}a", "é".repeat(500)))).await;
    assert_eq!(status, 400, "1001 bytes is over Instagram's limit");

    // Recipients outside the window or unavailable.
    meta.control("recipients/7001234567890999", json!({ "state": "window_closed" })).await;
    let (_, body, _) = meta.send("me/messages", &token_a, text("7001234567890999", "x")).await;
    assert_eq!((body["error"]["code"].as_u64(), body["error"]["error_subcode"].as_u64()), (Some(10), Some(2_018_278)));
    meta.control("recipients/7001234567890998", json!({ "state": "unavailable" })).await;
    let (_, body, _) = meta.send("me/messages", &token_a, text("7001234567890998", "x")).await;
    assert_eq!(body["error"]["code"].as_u64(), Some(551));

    let messages = meta.handle.sim().messages();
    let channels: Vec<_> = messages.iter().map(|m| (m.recipient_id.as_str(), m.channel)).collect();
    assert_eq!(channels.len(), 4);
    assert_eq!(channels[3], (igsid, meta_sim::Channel::Instagram));
    assert!(messages.iter().all(|m| m.page_id == PAGE_A));
    let listed: Value = meta
        .http
        .get(format!("{}/_sim/messages?page_id={PAGE_A}", meta.handle.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 4);
    assert_eq!(listed[0]["text"], "Hello!");
}

#[tokio::test]
async fn calls_over_the_rate_are_throttled_and_counted_as_violations() {
    let meta = Meta::start(SimConfig { rate_limit_per_page: 5, ..SimConfig::default() }).await;
    let user = meta.long_lived_token(&all_scopes()).await;
    let token = meta.page_tokens(&user).await[0].1.clone();
    let started = Instant::now();
    let mut outcomes = Vec::new();
    for i in 0..20 {
        outcomes.push(meta.send("me/messages", &token, text("7001234567890123", &format!("burst {i}"))).await);
    }
    assert!(started.elapsed() < Duration::from_millis(900), "the burst must fit in one window for this test");
    let ok = outcomes.iter().filter(|(s, _, _)| *s == 200).count();
    assert_eq!(ok, 5);
    let (status, body, usage) = &outcomes[10];
    assert_eq!((*status, body["error"]["code"].as_u64()), (400, Some(80006)));
    assert_eq!(body["error"]["is_transient"], true);
    let usage = usage.as_ref().unwrap();
    assert_eq!(usage[PAGE_A][0]["call_count"], 100);
    assert!(usage[PAGE_A][0]["estimated_time_to_regain_access"].as_u64().unwrap() >= 1);
    assert_eq!(meta.handle.sim().violations().get(PAGE_A), Some(&15));

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(meta.send("me/messages", &token, text("7001234567890123", "after")).await.0, 200);
    let state: Value =
        meta.http.get(format!("{}/_sim/state", meta.handle.url())).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["counters"]["violations_total"], 15);
}

#[tokio::test]
async fn injected_faults_answer_like_meta_and_reset_clears_them() {
    let meta = Meta::start(SimConfig::default()).await;
    let user = meta.long_lived_token(&all_scopes()).await;
    let token = meta.page_tokens(&user).await[0].1.clone();
    let psid = "7001234567890123";

    meta.control("faults", json!({ "error_rate": 1.0 })).await;
    let (status, body, _) = meta.send("me/messages", &token, text(psid, "x")).await;
    assert_eq!((status, body["error"]["code"].as_u64()), (500, Some(2)));

    meta.control("faults", json!({ "latency_ms": 150 })).await;
    let t0 = Instant::now();
    assert_eq!(meta.send("me/messages", &token, text(psid, "x")).await.0, 200);
    assert!(t0.elapsed() >= Duration::from_millis(150));

    meta.control("pages/104711112233445/throttle", json!({ "seconds": 120, "code": 613 })).await;
    let (_, body, usage) = meta.send("me/messages", &token, text(psid, "x")).await;
    assert_eq!(body["error"]["code"].as_u64(), Some(613));
    assert_eq!(usage.unwrap()[PAGE_A][0]["estimated_time_to_regain_access"], 2);

    let codes: Vec<u32> = meta.handle.sim().errors().iter().map(|e| e.code).collect();
    assert_eq!(codes, [2, 613], "every error answered is recorded");
    meta.control("reset", json!({})).await;
    assert_eq!(meta.send("me/messages", &token, text(psid, "x")).await.0, 200, "reset lifts faults and throttles");

    meta.control("pages/104711112233445/invalidate-token", json!({ "subcode": 460 })).await;
    let (_, body, _) = meta.send("me/messages", &token, text(psid, "x")).await;
    assert_eq!((body["error"]["code"].as_u64(), body["error"]["error_subcode"].as_u64()), (Some(190), Some(460)));
    let (_, debug) =
        meta.get("debug_token", &[("input_token", &token), ("access_token", &format!("1234567890|{SECRET}"))]).await;
    assert_eq!(debug["data"]["is_valid"], false);
    let fresh = meta.page_tokens(&user).await[0].1.clone();
    assert_eq!(meta.send("me/messages", &fresh, text(psid, "x")).await.0, 200, "a new token (reconnect) works again");

    let codes: Vec<u32> = meta.handle.sim().errors().iter().map(|e| e.code).collect();
    assert_eq!(codes, [190], "reset cleared the earlier records");
}

#[tokio::test]
async fn sender_posts_signed_bodies_and_reports_acknowledgements() {
    use warp::Filter as _;
    // A receiver that checks the signature with its own HMAC, independent of the sender's code.
    let receiver = warp::post().and(warp::header::<String>("x-hub-signature-256")).and(warp::body::bytes()).map(
        |sig: String, body: bytes::Bytes| {
            let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
            mac.update(&body);
            let ok = sig
                .strip_prefix("sha256=")
                .and_then(|h| hex::decode(h).ok())
                .is_some_and(|s| mac.verify_slice(&s).is_ok());
            let _: Value = serde_json::from_slice(&body).unwrap();
            if ok { warp::http::StatusCode::OK } else { warp::http::StatusCode::FORBIDDEN }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(warp::serve(receiver).incoming(listener).run());

    let mut generator = meta_sim::webhook::Generator::new(meta_sim::webhook::GenConfig::default());
    let mut plan = meta_sim::sender::SendPlan {
        target: format!("http://{addr}/api/facebook-webhook"),
        app_secret: SECRET.to_owned(),
        count: 60,
        rate: Some(300.0),
        concurrency: 8,
        timeout: Duration::from_secs(5),
    };
    let report = meta_sim::sender::run(&plan, || generator.next_body()).await;
    assert_eq!((report.sent, report.acknowledged, report.transport_errors), (60, 60, 0));
    assert!(report.p50 <= report.p99 && report.p99 <= report.max);
    assert!(report.elapsed >= Duration::from_millis(190), "60 requests at 300/s take about 0.2 s");

    plan.app_secret = "another-secret".to_owned();
    plan.rate = None;
    let report = meta_sim::sender::run(&plan, || generator.next_body()).await;
    assert_eq!(report.acknowledged, 0);
    assert_eq!(report.by_status.get(&403), Some(&60));
}

fn meta_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}
