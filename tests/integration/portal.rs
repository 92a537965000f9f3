//! The portal over HTTP: sign-in and its protections, what each kind of user sees, and isolation between
//! tenants on every route.

use std::time::Duration;

use secrecy::SecretString;
use switchboard::domain::{Email, Role};
use switchboard::store::{IntegrationStatus, NewUser};

use crate::app::{Options, PAGE_A, PAGE_B, TestApp, spawn_app, text_event};
use crate::support::eventually;

pub(crate) const PASSWORD: &str = "a long enough passphrase";

pub(crate) async fn add_user(app: &TestApp, email: &str, client: Option<switchboard::domain::ClientId>) {
    let hash = switchboard::secrets::password::hash(SecretString::from(PASSWORD.to_owned())).await.unwrap();
    let role = if client.is_some() { Role::Client } else { Role::Operator };
    app.db
        .store
        .create_user(&NewUser {
            email: Email::parse(email).unwrap(),
            password_hash: hash,
            role,
            client_id: client,
            must_change_password: false,
        })
        .await
        .unwrap();
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {name} in {html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn sign_in(app: &TestApp, b: &reqwest::Client, email: &str, password: &str) -> reqwest::Response {
    let page = b.get(app.url("/portal/login")).send().await.unwrap().text().await.unwrap();
    let csrf = field(&page, "csrf");
    b.post(app.url("/portal/login"))
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password)])
        .send()
        .await
        .unwrap()
}

pub(crate) async fn page(app: &TestApp, b: &reqwest::Client, path: &str) -> (u16, String) {
    let resp = b.get(app.url(path)).send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_protected_cookie_and_wrong_passwords_are_refused_then_slowed() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    let b = browser();
    assert_eq!(page(&app, &b, "/portal").await.0, 303, "signed out: to the sign-in page");

    let resp = sign_in(&app, &b, "owner@woodstock.example", "wrong password!").await;
    assert_eq!(resp.status().as_u16(), 401);
    assert!(resp.text().await.unwrap().contains("not right"));
    let resp = sign_in(&app, &b, "nobody@woodstock.example", PASSWORD).await;
    assert_eq!(resp.status().as_u16(), 401, "unknown e-mails get the same answer");

    let resp = sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await;
    assert_eq!(resp.status().as_u16(), 303);
    let set_cookie = resp
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("sb_session="))
        .unwrap();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"), "{set_cookie}");
    assert!(!set_cookie.contains("Secure"), "not on plain http");
    let (status, html) = page(&app, &b, "/portal").await;
    assert_eq!(status, 200);
    assert!(html.contains("Connect with Facebook") && html.contains("Client woodstock-outlet"), "{html}");

    let other = browser();
    let mut last = 0;
    for _ in 0..6 {
        last = sign_in(&app, &other, "owner@woodstock.example", "still wrong!!").await.status().as_u16();
    }
    assert_eq!(last, 429, "repeated failures for one account are slowed");

    // A POST without the session's CSRF token changes nothing.
    let resp = b.post(app.url("/portal/logout")).form(&[("csrf", "forged")]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    assert_eq!(page(&app, &b, "/portal").await.0, 200, "still signed in: the forged sign-out was ignored");
    let (_, html) = page(&app, &b, "/portal").await;
    let csrf = field(&html, "csrf");
    b.post(app.url("/portal/logout")).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(page(&app, &b, "/portal").await.0, 303, "signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_user_sees_and_acts_on_its_own_pages_only() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (_, html) = page(&app, &b, "/portal").await;
    assert!(html.contains(PAGE_A) && !html.contains(PAGE_B), "only its own page is listed");
    let csrf = field(&html, "csrf");

    // Its own Page's charts: the last 24 hours on the home page, and 30 days on the Page's own.
    assert!(html.contains(&format!("id=\"page-{PAGE_A}-events\"")), "its Page's charts");
    assert!(!html.contains("id=\"client-"), "the all-Pages charts are the operator's");
    let (status, health) = page(&app, &b, &format!("/portal/pages/{PAGE_A}/health")).await;
    assert_eq!(status, 200);
    assert!(health.contains("The last 30 days") && health.contains("id=\"month-answers\""), "{health}");

    // Another client's page, by every route that names a page: 404, nothing changed.
    assert_eq!(page(&app, &b, &format!("/portal/pages/{PAGE_B}/disconnect")).await.0, 404);
    assert_eq!(page(&app, &b, &format!("/portal/pages/{PAGE_B}/health")).await.0, 404);
    let resp = b
        .post(app.url(&format!("/portal/pages/{PAGE_B}/disconnect")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(page(&app, &b, "/portal/pages/999/disconnect").await.0, 404);
    // Operator routes: 403.
    for path in ["/portal/clients", "/portal/clients/rural-king/link", "/portal/users"] {
        let resp = b
            .post(app.url(path))
            .form(&[("csrf", csrf.as_str()), ("name", "X"), ("email", "x@y.example")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 403, "{path}");
    }
    let rk =
        app.db.store.integration_by_page(&switchboard::domain::PageId::parse(PAGE_B).unwrap()).await.unwrap().unwrap();
    assert_eq!(rk.status, IntegrationStatus::Connected, "the other client's page is untouched");
    assert_eq!(app.db.store.list_clients().await.unwrap().len(), 2, "no client was created");

    // Its own page: confirm, then disconnect.
    let (status, confirm) = page(&app, &b, &format!("/portal/pages/{PAGE_A}/disconnect")).await;
    assert_eq!(status, 200);
    assert!(confirm.contains("Disconnect"));
    let resp = b
        .post(app.url(&format!("/portal/pages/{PAGE_A}/disconnect")))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403, "no CSRF token, no disconnect");
    let resp = b
        .post(app.url(&format!("/portal/pages/{PAGE_A}/disconnect")))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let (_, html) = page(&app, &b, "/portal?notice=disconnected").await;
    assert!(html.contains("The Page was disconnected") && html.contains("Revoked"), "{html}");
    assert!(!app.meta.sim().subscriptions().contains_key(PAGE_A) || app.meta.sim().subscriptions().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_from_the_portal_returns_with_a_banner_and_status_updates() {
    let app = spawn_app(Options { connect: false, ..Options::default() }).await;
    let wo = crate::support::client(&app.db.store, "woodstock-outlet").await;
    add_user(&app, "owner@woodstock.example", Some(wo.id)).await;
    let b = browser();
    sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await;
    let (_, html) = page(&app, &b, "/portal").await;
    let csrf = field(&html, "csrf");
    let resp = b.post(app.url("/portal/connect")).form(&[("csrf", csrf.as_str())]).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let dialog = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let callback = crate::app::decide(&b, &dialog, &[PAGE_A], "continue").await;
    let resp = b.get(&callback).send().await.unwrap();
    let back = resp.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with("/portal?result="), "{back}");
    let (_, html) = page(&app, &b, &back).await;
    assert!(html.contains("id=\"outcome\"") && html.contains("Connected: Woodstock Outlet"), "{html}");
    assert!(html.contains("data-status=\"connected\""));

    // Meta kills the token; the next message fails; the portal says so in plain words.
    app.meta.sim().invalidate_page_tokens(PAGE_A, 460);
    app.post_webhook(&crate::app::text_event(PAGE_A, "7001", "m_portal", "hi", 1)).await;
    let html = eventually("the portal says the page needs reconnection", || async {
        let (_, html) = page(&app, &b, "/portal").await;
        if html.contains("Needs reconnection") { Ok(html) } else { Err(html) }
    })
    .await;
    assert!(html.contains("password of the account that connected it changed"), "{html}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_every_tenant_with_its_figures_and_manage_clients() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "ops@switchboard.example", None).await;
    app.post_webhook(&crate::app::text_event(PAGE_A, "7001", "m_ops", "hi", 1)).await;
    app.wait_for_sent(1).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let b = browser();
    sign_in(&app, &b, "ops@switchboard.example", PASSWORD).await;
    let (_, html) = page(&app, &b, "/portal").await;
    assert!(html.contains("woodstock-outlet") && html.contains("rural-king"), "{html}");
    // The counters are process-wide and other tests in this binary use the same page ids, so only their
    // presence is asserted here; `figures::parse` is unit-tested on exact text.
    let woodstock = html.split("data-page=\"104711112233445\"").nth(1).unwrap();
    assert!(woodstock.contains("class=\"figures\">events ") && woodstock.contains("actor running"), "{html}");
    assert!(!woodstock.split("</div>").next().unwrap().contains("replies 0"), "the reply was counted: {html}");
    let csrf = field(&html, "csrf");

    let resp = b
        .post(app.url("/portal/clients"))
        .form(&[("csrf", csrf.as_str()), ("name", "Farm Supply Co")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert!(
        app.db
            .store
            .client_by_slug(&switchboard::domain::ClientSlug::parse("farm-supply-co").unwrap())
            .await
            .unwrap()
            .is_some()
    );
    let (status, link) = {
        let resp = b
            .post(app.url("/portal/clients/farm-supply-co/link"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(link.contains("/api/auth/facebook/start?client=farm-supply-co"), "{link}");
    let resp = b
        .post(app.url("/portal/users"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", "owner@farm.example"),
            ("role", "client"),
            ("client", "farm-supply-co"),
        ])
        .send()
        .await
        .unwrap();
    let invited = resp.text().await.unwrap();
    let password = invited.split("id=\"password\">").nth(1).unwrap().split('<').next().unwrap().to_owned();
    let farmer = browser();
    assert_eq!(
        sign_in(&app, &farmer, "owner@farm.example", &password).await.status().as_u16(),
        303,
        "the one-time password works"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hands_a_conversation_a_person_was_handling_back_to_the_bot() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    add_user(&app, "owner@ruralking.example", Some(app.clients[1].id)).await;
    // Someone at the store answers customer 7300001 in the Page Inbox: the bot falls silent with them.
    let now = chrono::Utc::now().timestamp_millis();
    let person = meta_sim::webhook::echo(PAGE_A, "7300001", now, "m_person_1".into(), 263_902_037_430_900, "Ana here");
    let body = meta_sim::webhook::to_meta_json(&meta_sim::webhook::Envelope {
        object: "page",
        entry: vec![meta_sim::webhook::Entry { id: PAGE_A.to_owned(), time: now, messaging: vec![person] }],
    });
    assert_eq!(app.post_webhook(&body).await.0, 200);
    eventually("the hold is kept", || async {
        let holds = app.db.store.conversation_holds(PAGE_A, 0).await.unwrap();
        if holds.len() == 1 { Ok(()) } else { Err(format!("{holds:?}")) }
    })
    .await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7300001", "m_c1", "hello?", now + 1)).await.0, 200);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7300002", "m_c2", "hello?", now + 1)).await.0, 200);
    let sent = app.wait_for_sent(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let to = |who: &str| app.sent().iter().filter(|m| m.recipient_id == who).count();
    assert_eq!((sent[0].recipient_id.as_str(), to("7300001")), ("7300002", 0), "silent with 7300001");

    // Another client sees none of it and cannot hand it back.
    let other = browser();
    assert_eq!(sign_in(&app, &other, "owner@ruralking.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &other, "/portal").await;
    let other_csrf = field(&home, "csrf");
    assert_eq!(page(&app, &other, &format!("/portal/pages/{PAGE_A}/people")).await.0, 404);
    let resp = other
        .post(app.url(&format!("/portal/pages/{PAGE_A}/people/7300001/release")))
        .form(&[("csrf", other_csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(app.db.store.conversation_holds(PAGE_A, 0).await.unwrap().len(), 1, "untouched");

    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &b, "/portal").await;
    assert!(home.contains(&format!("/portal/pages/{PAGE_A}/people")), "linked from the Page");
    let (status, people) = page(&app, &b, &format!("/portal/pages/{PAGE_A}/people")).await;
    assert_eq!(status, 200);
    assert!(people.contains("Customer 7300001") && people.contains("Hand back to the bot"), "{people}");
    let csrf = field(&people, "csrf");
    let release = |csrf: String, person: &'static str| {
        let b = b.clone();
        let url = app.url(&format!("/portal/pages/{PAGE_A}/people/{person}/release"));
        async move { b.post(url).form(&[("csrf", csrf.as_str())]).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(release("forged".into(), "7300001").await, 403, "no CSRF token, nothing handed back");
    assert_eq!(release(csrf.clone(), "not-a-person").await, 404);
    assert_eq!(app.db.store.conversation_holds(PAGE_A, 0).await.unwrap().len(), 1);
    assert_eq!(release(csrf.clone(), "7300001").await, 303);
    assert!(app.db.store.conversation_holds(PAGE_A, 0).await.unwrap().is_empty(), "the bot's again");
    let owners = app.meta.sim().thread_owners();
    assert_eq!(
        owners[format!("{PAGE_A}:7300001")],
        meta_sim::config::DEFAULT_APP_ID.to_string(),
        "taken back at Meta too"
    );
    let (_, people) = page(&app, &b, &format!("/portal/pages/{PAGE_A}/people?notice=handed-back")).await;
    assert!(
        people.contains("The conversation is the bot&#39;s again")
            || people.contains("The conversation is the bot's again")
    );
    assert!(people.contains("None: the bot answers every conversation."));

    // The running tenant let go too: 7300001's next message is answered.
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7300001", "m_c3", "still there?", now + 2)).await.0, 200);
    eventually("7300001 answered", || async { if to("7300001") == 1 { Ok(()) } else { Err("not yet".to_owned()) } })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_edits_its_bot_tries_it_and_its_pages_answer_with_the_saved_rules() {
    let app = spawn_app(Options::default()).await;
    let woodstock = app.clients[0].id;
    add_user(&app, "owner@woodstock.example", Some(woodstock)).await;
    add_user(&app, "ops@switchboard.example", None).await;
    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &b, "/portal").await;
    assert!(home.contains("/portal/bot"), "linked from the client's page");
    let (status, editor) = page(&app, &b, "/portal/bot").await;
    assert_eq!(status, 200);
    let csrf = field(&editor, "csrf");
    assert_eq!(field(&editor, "version"), "0");
    let post = |fields: Vec<(&'static str, String)>| {
        let (b, url, csrf) = (b.clone(), app.url("/portal/bot"), csrf.clone());
        async move {
            let mut form = vec![("csrf", csrf)];
            form.extend(fields);
            let resp = b.post(url).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let sofa = || vec![("words_0", "sofa, couch".to_owned()), ("reply_0", "Sofas are 20% off this week.".to_owned())];

    // Try it, before saving: which rule answers and what it says; nothing is stored.
    let mut tried = sofa();
    tried.extend([("try", "Do you have a COUCH?".to_owned()), ("action", "try".to_owned()), ("version", "0".into())]);
    let (status, html) = post(tried).await;
    assert_eq!(status, 200);
    assert!(html.contains("Answered by rule 1") && html.contains("Sofas are 20% off this week."), "{html}");
    assert_eq!(app.db.store.client_settings(woodstock).await.unwrap().map(|c| c.rules_version).unwrap_or(0), 0);

    // Problems in plain words, and nothing saved.
    let mut bad = sofa();
    bad.extend([
        ("words_1", "Sofa".to_owned()),
        ("reply_1", "A second answer".to_owned()),
        ("words_2", "hours".to_owned()),
        ("words_3", "long".to_owned()),
        ("reply_3", "x".repeat(2000)),
        ("action", "save".to_owned()),
        ("version", "0".to_owned()),
    ]);
    let (status, html) = post(bad).await;
    assert_eq!(status, 422);
    for problem in [
        "\"Sofa\" is in rule 1 and rule 2",
        "Rule 3 has words but an empty reply.",
        "Rule 4: the reply is 2000 characters; Messenger takes at most 1999.",
    ] {
        assert!(html.contains(&problem.replace('"', "&quot;")) || html.contains(problem), "{problem} in {html}");
    }
    assert!(app.db.store.client_settings(woodstock).await.unwrap().is_none_or(|c| c.rules_version == 0));

    // The Page's tenant is running, with the rules it loaded before.
    let now = chrono::Utc::now().timestamp_millis();
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7400001", "m_before", "any sofa deals?", now)).await.0, 200);
    let before = app.wait_for_sent(1).await;
    assert_ne!(before[0].text.as_deref(), Some("Sofas are 20% off this week."));

    // Saved: a new version, audited, and the running Page answers with it from the next message.
    let mut good = sofa();
    good.extend([
        ("fallback", "We'll get back to you.".to_owned()),
        ("action", "save".into()),
        ("version", "0".into()),
    ]);
    assert_eq!(post(good.clone()).await.0, 303);
    let saved = app.db.store.client_settings(woodstock).await.unwrap().unwrap();
    assert_eq!(saved.rules_version, 1);
    let audit = app.db.store.recent_audit(10).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "client.rules_saved" && a.detail == "version 1"), "{audit:?}");
    let (_, editor) = page(&app, &b, "/portal/bot?notice=saved").await;
    assert!(editor.contains("Saved.") && editor.contains("Sofas are 20% off this week."));
    assert_eq!(field(&editor, "version"), "1");
    // A save based on the old version is refused: someone else saved meanwhile.
    assert_eq!(post(good).await.0, 409);

    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7400001", "m_sofa", "any sofa deals?", now + 1)).await.0, 200);
    let sent = app.wait_for_sent(2).await;
    assert_eq!(sent[1].text.as_deref(), Some("Sofas are 20% off this week."));

    // Operators do not edit a client's bot here.
    let ops = browser();
    assert_eq!(sign_in(&app, &ops, "ops@switchboard.example", PASSWORD).await.status().as_u16(), 303);
    assert_eq!(page(&app, &ops, "/portal/bot").await.0, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bot_editor_keeps_what_it_does_not_edit_and_refuses_a_form_without_its_version() {
    let app = spawn_app(Options::default()).await;
    let woodstock = app.clients[0].id;
    add_user(&app, "owner@woodstock.example", Some(woodstock)).await;
    // Set from a file with the CLI: asking for a person in Spanish, which the form does not show.
    let rules = r#"{"fallback":"Gracias","person":{"keywords":["agente"],"reply":"Un momento"}}"#;
    let setting = switchboard::store::ResponderSetting::Rules { rules_json: rules.to_owned() };
    app.db.store.set_responder(woodstock, &setting).await.unwrap();
    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (_, editor) = page(&app, &b, "/portal/bot").await;
    let (csrf, version) = (field(&editor, "csrf"), field(&editor, "version"));
    assert_eq!(version, "1", "rules set with the CLI are a version too");
    let post = |form: Vec<(&'static str, String)>| {
        let (b, url) = (b.clone(), app.url("/portal/bot"));
        async move { b.post(url).form(&form).send().await.unwrap().status().as_u16() }
    };
    let no_version = vec![("csrf", csrf.clone()), ("fallback", "Thanks".to_owned()), ("action", "save".to_owned())];
    assert_eq!(post(no_version).await, 400);
    // Rows beyond the ones the editor drew are read too.
    let form = vec![
        ("csrf", csrf.clone()),
        ("version", version),
        ("words_250", "sofa".to_owned()),
        ("reply_250", "Sofas are 20% off.".to_owned()),
        ("action", "save".to_owned()),
    ];
    assert_eq!(post(form).await, 303);
    let Some(switchboard::store::ResponderSetting::Rules { rules_json }) =
        app.db.store.client_settings(woodstock).await.unwrap().map(|c| c.responder)
    else {
        panic!("rules expected")
    };
    let saved: switchboard_actors::Rules = serde_json::from_str(&rules_json).unwrap();
    assert_eq!(saved.keywords.len(), 1, "{rules_json}");
    assert_eq!(saved.person.reply, "Un momento", "asking for a person stays as set: {rules_json}");
    assert_eq!(saved.fallback, None, "the fallback is what the form said (emptied)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_reads_its_conversations_newest_first_paged_with_each_state_in_plain_words() {
    let app = spawn_app(Options::default()).await;
    add_user(&app, "owner@woodstock.example", Some(app.clients[0].id)).await;
    add_user(&app, "owner@ruralking.example", Some(app.clients[1].id)).await;
    add_user(&app, "ops@switchboard.example", None).await;
    let now = chrono::Utc::now().timestamp_millis();
    let customer = "7400001";
    assert_eq!(
        app.post_webhook(&text_event(PAGE_A, customer, "m_v1", "Do you deliver to Elm St 12?", now)).await.0,
        200
    );
    let bot_said = app.wait_for_sent(1).await[0].text.clone().unwrap();
    // Then someone at the store answers in the Page Inbox, and the customer's next message is theirs.
    let person =
        meta_sim::webhook::echo(PAGE_A, customer, now + 1, "m_v_person".into(), 263_902_037_430_900, "Ana here");
    let body = meta_sim::webhook::to_meta_json(&meta_sim::webhook::Envelope {
        object: "page",
        entry: vec![meta_sim::webhook::Entry { id: PAGE_A.to_owned(), time: now + 1, messaging: vec![person] }],
    });
    assert_eq!(app.post_webhook(&body).await.0, 200);
    eventually("the hold is kept", || async {
        let holds = app.db.store.conversation_holds(PAGE_A, 0).await.unwrap();
        if holds.len() == 1 { Ok(()) } else { Err(format!("{holds:?}")) }
    })
    .await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, customer, "m_v2", "thanks Ana", now + 2)).await.0, 200);
    // Twenty more customers write after that: the first one's conversation moves to the second page.
    for n in 0..20 {
        let body = text_event(PAGE_A, &format!("74001{n:02}"), &format!("m_v_other_{n}"), "hi", now + 3 + n);
        assert_eq!(app.post_webhook(&body).await.0, 200);
    }
    app.wait_for_sent(21).await;
    eventually("every event finished", || async {
        let counts = app.db.store.inbox_counts().await.unwrap();
        if counts.iter().any(|(s, _)| s == "pending") { Err(format!("{counts:?}")) } else { Ok(()) }
    })
    .await;

    let list = format!("/portal/pages/{PAGE_A}/conversations");
    let one = format!("{list}/{customer}");
    // Another client, a bad cursor, a customer that is not an id: refused, and nothing shown.
    let other = browser();
    assert_eq!(sign_in(&app, &other, "owner@ruralking.example", PASSWORD).await.status().as_u16(), 303);
    for path in [list.clone(), one.clone(), format!("{list}?before=5"), format!("{one}?before=5")] {
        let (status, body) = page(&app, &other, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("Elm St"), "{path}");
    }
    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (status, body) = page(&app, &b, &format!("{list}?before=abc")).await;
    assert!(status == 400 && body.contains("&quot;before&quot; must be a positive whole number"), "{status}: {body}");
    assert_eq!(page(&app, &b, &format!("{list}/not-a-customer")).await.0, 404);
    assert_eq!(page(&app, &b, &format!("{list}/7499999")).await.0, 404, "no such conversation");

    let (_, home) = page(&app, &b, "/portal").await;
    assert!(home.contains(&format!("href=\"{list}\"")), "linked from the Page");
    let (status, first) = page(&app, &b, &list).await;
    assert_eq!(status, 200);
    assert_eq!(first.matches("class=\"card conversation\"").count(), 20, "twenty to a page");
    assert!(!first.contains(&format!("data-customer=\"{customer}\"")), "older activity is on the next page");
    let newest = first.find("data-customer=\"7400119\"").unwrap();
    assert!(newest < first.find("data-customer=\"7400100\"").unwrap(), "newest activity first");
    let older = first.split("href=\"?before=").nth(1).expect("an Older link").split('"').next().unwrap();
    let (_, second) = page(&app, &b, &format!("{list}?before={older}")).await;
    assert_eq!(second.matches("class=\"card conversation\"").count(), 1, "{second}");
    assert!(second.contains(&format!("data-customer=\"{customer}\"")) && second.contains("A person is handling"));
    assert!(second.contains("thanks Ana") && !second.contains("id=\"older\""), "its newest message, no further page");

    let (status, talk) = page(&app, &b, &one).await;
    assert_eq!(status, 200);
    for said in ["Do you deliver to Elm St 12?", "Ana here", "thanks Ana", &bot_said] {
        assert!(talk.contains(said), "{said:?} in {talk}");
    }
    let order: Vec<usize> = ["thanks Ana", "Ana here", "Elm St"].iter().map(|s| talk.find(s).unwrap()).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "newest first: {order:?}");
    assert!(talk.contains("data-state=\"answered\""), "the first message was answered");
    assert!(talk.contains("a person was handling this conversation"), "the bot was silent for a reason");
    assert!(talk.contains("A person at your business"));

    // The operator sees it too; hand back from the conversation returns to it.
    let ops = browser();
    assert_eq!(sign_in(&app, &ops, "ops@switchboard.example", PASSWORD).await.status().as_u16(), 303);
    assert_eq!(page(&app, &ops, &one).await.0, 200);
    let resp = b
        .post(app.url(&format!("/portal/pages/{PAGE_A}/people/{customer}/release")))
        .form(&[("csrf", field(&talk, "csrf").as_str()), ("back", "conversation")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, format!("{one}?notice=handed-back"));
    let (_, talk) = page(&app, &b, &location).await;
    assert!(talk.contains("id=\"bot-handles\"") && talk.contains("id=\"notice\""), "{talk}");

    let metrics = app.metrics().await;
    assert!(!metrics.contains("Elm St") && !metrics.contains("Ana here"), "no message reaches a metric label");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_choose_their_pause_and_operators_set_the_bot_and_rate_in_the_portal() {
    use switchboard::store::ResponderSetting;
    let app = spawn_app(Options::default()).await;
    let (woodstock, rural) = (&app.clients[0], &app.clients[1]);
    add_user(&app, "owner@woodstock.example", Some(woodstock.id)).await;
    add_user(&app, "owner@ruralking.example", Some(rural.id)).await;
    add_user(&app, "ops@switchboard.example", None).await;
    let settings_of = |slug: &str| format!("/portal/clients/{slug}/settings");
    let mine = settings_of(woodstock.slug.as_str());
    let post = |b: &reqwest::Client, path: &str, form: Vec<(&'static str, String)>| {
        let (b, url) = (b.clone(), app.url(path));
        async move {
            let resp = b.post(url).form(&form).send().await.unwrap();
            (resp.status().as_u16(), resp.text().await.unwrap())
        }
    };
    let stored =
        || async { app.db.store.client_settings(woodstock.id).await.unwrap().unwrap_or_else(|| panic!("no settings")) };

    let b = browser();
    assert_eq!(sign_in(&app, &b, "owner@woodstock.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &b, "/portal").await;
    assert!(home.contains(&format!("href=\"{mine}\"")), "linked from the client's home");
    let (status, form) = page(&app, &b, &mine).await;
    assert!(status == 200 && form.contains("30m (the default)"), "{form}");
    assert!(!form.contains("id=\"responder\"") && !form.contains("id=\"rate\""), "a client sets only its pause");
    let csrf = field(&form, "csrf");
    let pause = |value: &str| vec![("csrf", csrf.clone()), ("what", "pause".to_owned()), ("pause", value.to_owned())];

    let (status, body) = post(&b, &mine, pause("5s")).await;
    assert!(status == 422 && body.contains("must be from 1m to 7d") && body.contains("Nothing was changed"), "{body}");
    assert!(app.db.store.client_settings(woodstock.id).await.unwrap().is_none_or(|c| c.human_pause_secs.is_none()));
    assert_eq!(post(&b, &mine, pause("2h")).await.0, 303);
    assert_eq!(stored().await.human_pause_secs, Some(7200));
    let (_, form) = page(&app, &b, &format!("{mine}?notice=saved")).await;
    assert!(form.contains("id=\"saved\"") && form.contains("value=\"2h\""), "{form}");
    let rate = vec![("csrf", csrf.clone()), ("what", "rate".to_owned()), ("rate", "5".to_owned())];
    assert_eq!(post(&b, &mine, rate).await.0, 403, "a client does not set its rate");
    assert_eq!(stored().await.send_rate_per_second, None);
    let forged = vec![("csrf", "forged".to_owned()), ("what", "pause".to_owned()), ("pause", "1h".to_owned())];
    assert_eq!(post(&b, &mine, forged).await.0, 403);
    assert_eq!(stored().await.human_pause_secs, Some(7200), "untouched");

    // Another client can neither see nor change it.
    let other = browser();
    assert_eq!(sign_in(&app, &other, "owner@ruralking.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &other, "/portal").await;
    let other_csrf = field(&home, "csrf");
    assert_eq!(page(&app, &other, &mine).await.0, 404);
    let theirs = vec![("csrf", other_csrf), ("what", "pause".to_owned()), ("pause", "1m".to_owned())];
    assert_eq!(post(&other, &mine, theirs).await.0, 404);
    assert_eq!(stored().await.human_pause_secs, Some(7200));
    assert_eq!(page(&app, &b, &settings_of("no-such-client")).await.0, 404);

    // The operator sets the rate and the relay; the secret is never shown again.
    let ops = browser();
    assert_eq!(sign_in(&app, &ops, "ops@switchboard.example", PASSWORD).await.status().as_u16(), 303);
    let (_, home) = page(&app, &ops, "/portal").await;
    assert!(home.contains(&format!("href=\"{mine}\"")));
    let (_, form) = page(&app, &ops, &mine).await;
    assert!(form.contains("id=\"responder\"") && form.contains("id=\"rate\""));
    let csrf = field(&form, "csrf");
    let rate = |value: &str| vec![("csrf", csrf.clone()), ("what", "rate".to_owned()), ("rate", value.to_owned())];
    assert_eq!(post(&ops, &mine, rate("5000")).await.0, 422);
    assert_eq!(post(&ops, &mine, rate("5")).await.0, 303);
    assert_eq!(stored().await.send_rate_per_second, Some(5));
    let relay = |url: &str, secret: &str| {
        vec![
            ("csrf", csrf.clone()),
            ("what", "responder".to_owned()),
            ("kind", "relay".to_owned()),
            ("url", url.to_owned()),
            ("secret", secret.to_owned()),
        ]
    };
    let secret = "relay-secret-7f3k9q2-long-enough";
    let (status, body) = post(&ops, &mine, relay("ftp://bot.example/hook", secret)).await;
    assert!(status == 422 && body.contains("The relay URL must be an https URL"), "{body}");
    let (status, body) = post(&ops, &mine, relay("https://bot.example/hook", "short")).await;
    assert!(status == 422 && body.contains("at least 16 characters"), "{body}");
    assert!(matches!(stored().await.responder, ResponderSetting::Rules { .. }), "nothing stored");
    assert_eq!(post(&ops, &mine, relay("https://bot.example/hook", secret)).await.0, 303);
    assert!(
        matches!(stored().await.responder, ResponderSetting::Relay { ref url, .. } if url == "https://bot.example/hook")
    );
    let (_, form) = page(&app, &ops, &mine).await;
    assert!(form.contains("https://bot.example/hook") && !form.contains(secret), "the secret is never shown");
    let rules = vec![("csrf", csrf.clone()), ("what", "responder".to_owned()), ("kind", "rules".to_owned())];
    assert_eq!(post(&ops, &mine, rules).await.0, 303);
    assert!(matches!(stored().await.responder, ResponderSetting::Rules { .. }));

    let audit = app.db.store.recent_audit(20).await.unwrap();
    let actions: Vec<&str> =
        audit.iter().filter(|a| a.client_id == Some(woodstock.id)).map(|a| a.action.as_str()).collect();
    for action in ["client.human_pause_set", "client.rate_set", "client.responder_set"] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
    assert!(audit.iter().all(|a| !a.detail.contains(secret)), "no secret in the audit log");
}
