//! The portal as a person uses it, in Debian's headless Chromium (through chromedriver): sign in, connect
//! with Facebook through the stand-in's consent page, cancel, and watch a dead token turn into "Needs
//! reconnection". Each step's screenshot is saved under `target/browser-artifacts/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's chromium and chromium-driver;
//! `.ci/run` installs them). Without them the test fails and says so, unless SWITCHBOARD_SKIP_BROWSER=1.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use secrecy::SecretString;
use serde_json::json;
use switchboard::domain::{Email, PageId, Role};
use switchboard::store::{IntegrationStatus, NewUser};

use crate::app::{Options, PAGE_A, TestApp, spawn_app, text_event};
use crate::support::{eventually, eventually_within};

const PASSWORD: &str = "browser test passphrase";

struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let path = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned());
    if !std::path::Path::new(&path).exists() || !std::path::Path::new("/usr/bin/chromium").exists() {
        if std::env::var("SWITCHBOARD_SKIP_BROWSER").as_deref() == Ok("1") {
            return None;
        }
        panic!(
            "browser tests need /usr/bin/chromium and {path} (apt-get install chromium chromium-driver); set SWITCHBOARD_SKIP_BROWSER=1 to skip them"
        );
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child =
        Command::new(path).arg(format!("--port={port}")).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    Some(Driver { child, port, _profile: tempfile::tempdir().unwrap() })
}

async fn browser(driver: &Driver) -> Client {
    let caps = json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-dev-shm-usage", "--disable-quic", "--no-first-run", "--disable-component-update",
                "--disable-sync", "--window-size=1000,1300",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }
    });
    let caps: fantoccini::wd::Capabilities = caps.as_object().unwrap().clone();
    eventually_within(Duration::from_secs(20), "Chromium started through chromedriver", || async {
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{}", driver.port))
            .await
            .map_err(|e| e.to_string())
    })
    .await
}

struct Shots {
    dir: PathBuf,
}

impl Shots {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/browser-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        Self { dir }
    }

    async fn take(&self, c: &Client, name: &str) {
        let png = c.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(self.dir.join(format!("{name}.png")), png).unwrap();
    }
}

/// The page's text, or an empty string while a navigation replaces the page under us.
async fn text(c: &Client) -> String {
    match c.find(Locator::Css("body")).await {
        Ok(body) => body.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

async fn wait_for_text(c: &Client, needle: &str) -> String {
    eventually(&format!("{needle:?} on the page"), || async {
        let body = text(c).await;
        if body.contains(needle) { Ok(body) } else { Err(format!("the page says:\n{body}")) }
    })
    .await
}

/// The client's user, "owner@woodstock.example".
async fn client_user(app: &TestApp, client_id: switchboard::domain::ClientId) {
    add_user(app, "owner@woodstock.example", Role::Client, Some(client_id)).await;
}

async fn add_user(app: &TestApp, email: &str, role: Role, client_id: Option<switchboard::domain::ClientId>) {
    let hash = switchboard::secrets::password::hash(SecretString::from(PASSWORD.to_owned())).await.unwrap();
    let email = Email::parse(email).unwrap();
    let user = NewUser { email, password_hash: hash, role, client_id, must_change_password: false };
    app.db.store.create_user(&user).await.unwrap();
}

async fn sign_in(c: &Client, app: &TestApp) {
    sign_in_as(c, app, "owner@woodstock.example").await;
}

async fn sign_in_as(c: &Client, app: &TestApp, email: &str) {
    c.goto(&app.url("/portal/login")).await.unwrap();
    c.find(Locator::Css("input[name=email]")).await.unwrap().send_keys(email).await.unwrap();
    c.find(Locator::Css("input[name=password]")).await.unwrap().send_keys(PASSWORD).await.unwrap();
    c.find(Locator::Id("sign-in")).await.unwrap().click().await.unwrap();
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).click().await.unwrap();
}

async fn type_into(c: &Client, css: &str, text: &str) {
    c.find(Locator::Css(css)).await.unwrap_or_else(|e| panic!("{css}: {e}")).send_keys(text).await.unwrap();
}

async fn connect_through_consent(c: &Client, shots: &Shots, button: &str, shot: &str) {
    c.find(Locator::Id("connect")).await.unwrap().click().await.unwrap();
    wait_for_text(c, "Switchboard is requesting access").await;
    shots.take(c, shot).await;
    c.find(Locator::Id(button)).await.unwrap().click().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_connects_cancels_and_sees_a_dead_token_in_a_real_browser() {
    let Some(driver) = chromedriver() else { return };
    let app: TestApp = spawn_app(Options { connect: false, ..Options::default() }).await;
    let client = crate::support::client(&app.db.store, "woodstock-outlet").await;
    client_user(&app, client.id).await;
    let c = browser(&driver).await;
    let shots = Shots::new();

    // Sign in.
    c.goto(&app.url("/portal/login")).await.unwrap();
    shots.take(&c, "01-sign-in").await;
    sign_in(&c, &app).await;
    wait_for_text(&c, "No Page is connected yet").await;
    shots.take(&c, "02-portal-empty").await;

    // Connect with Facebook, Continue on the consent page, back with the banner and the page Connected.
    connect_through_consent(&c, &shots, "continue", "03-consent").await;
    let body = wait_for_text(&c, "Connected: Woodstock Outlet").await;
    assert!(body.contains("Messages to this Page are answered."), "{body}");
    let badge =
        c.find(Locator::Css(&format!("section[data-page='{PAGE_A}'] .badge"))).await.unwrap().text().await.unwrap();
    assert_eq!(badge, "Connected");
    shots.take(&c, "04-connected").await;

    // Cancel instead: the failure is explained.
    connect_through_consent(&c, &shots, "cancel", "05-consent-again").await;
    wait_for_text(&c, "You cancelled the Facebook sign-in, so nothing was connected.").await;
    shots.take(&c, "06-cancelled").await;

    // The stand-in kills the token; a customer writes; the portal shows "Needs reconnection".
    app.meta.sim().invalidate_page_tokens(PAGE_A, 460);
    app.post_webhook(&text_event(PAGE_A, "7001", "m_browser", "hello?", 1)).await;
    let page = PageId::parse(PAGE_A).unwrap();
    eventually("the integration needs_reauth", || async {
        match app.db.store.integration_by_page(&page).await.unwrap().unwrap().status {
            IntegrationStatus::NeedsReauth => Ok(()),
            other => Err(format!("status {other}")),
        }
    })
    .await;
    c.goto(&app.url("/portal")).await.unwrap();
    let body = wait_for_text(&c, "Needs reconnection").await;
    assert!(body.contains("password of the account that connected it changed"), "{body}");
    shots.take(&c, "07-needs-reconnection").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_facebook_dialog_forwarded_to_another_browser_connects_nothing_in_a_real_browser() {
    let Some(driver) = chromedriver() else { return };
    let app: TestApp = spawn_app(Options { connect: false, ..Options::default() }).await;
    crate::support::client(&app.db.store, "rural-king").await;
    // The attacker opens Rural King's onboarding link in their own client and keeps the dialog URL…
    let links = switchboard::onboarding::OnboardLinks::new(&SecretString::from(crate::app::SECRET.to_owned()));
    let slug = switchboard::domain::ClientSlug::parse("rural-king").unwrap();
    let start = app
        .url(&format!("/api/auth/facebook/start?{}", links.sign(&slug, switchboard::clock::now().timestamp() + 600)));
    let resp = crate::support::login::press_continue(&app.http, &start).await.unwrap();
    let dialog = resp.headers()["location"].to_str().unwrap().to_owned();
    // …and sends it to the admin of the Woodstock Outlet Page, who consents in their own browser.
    let c = browser(&driver).await;
    let shots = Shots::new();
    c.goto(&dialog).await.unwrap();
    wait_for_text(&c, "Switchboard is requesting access").await;
    c.find(Locator::Id("continue")).await.unwrap().click().await.unwrap();
    let body = wait_for_text(&c, "started in another browser").await;
    assert!(body.contains("nothing was connected"), "{body}");
    shots.take(&c, "08-forwarded-dialog-refused").await;
    assert!(app.db.store.list_integrations().await.unwrap().is_empty(), "no Page landed in the attacker's tenant");

    // The refusal page is styled by the one stylesheet the Content-Security-Policy allows, and runs no script.
    let background = c.execute("return getComputedStyle(document.body).backgroundColor;", vec![]).await.unwrap();
    assert_eq!(background, json!("rgb(246, 247, 249)"), "the stylesheet loaded under the policy");
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_steers_its_bot_reads_its_conversations_and_a_person_takes_over_in_a_real_browser() {
    let Some(driver) = chromedriver() else { return };
    let app: TestApp = spawn_app(Options::default()).await;
    client_user(&app, app.clients[0].id).await;
    let c = browser(&driver).await;
    let shots = Shots::new();
    sign_in(&c, &app).await;
    wait_for_text(&c, "Your Pages").await;
    let (ana, bea) = ("7500001", "7500002");
    let texts_to = |who: &str| -> Vec<String> {
        app.sent().into_iter().filter(|m| m.recipient_id == who).filter_map(|m| m.text).collect()
    };
    let finished = || async {
        eventually("every event finished", || async {
            let counts = app.db.store.inbox_counts().await.unwrap();
            if counts.iter().any(|(s, _)| s == "pending") { Err(format!("{counts:?}")) } else { Ok(()) }
        })
        .await
    };
    let now = || chrono::Utc::now().timestamp_millis();

    // Edit a rule, try it, save it.
    click(&c, "#edit-bot").await;
    wait_for_text(&c, "Try it").await;
    type_into(&c, "input[name=words_0]", "opening hours, open").await;
    type_into(&c, "textarea[name=reply_0]", "We open at 9 every day.").await;
    type_into(&c, "input[name=try]", "When are you open?").await;
    click(&c, "#try").await;
    let tried = wait_for_text(&c, "Answered by rule 1").await;
    assert!(tried.contains("We open at 9 every day."), "{tried}");
    shots.take(&c, "09-bot-tried").await;
    click(&c, "#save").await;
    wait_for_text(&c, "Saved. Your Pages answer with these rules").await;

    // The customer's next message is answered with it.
    assert_eq!(app.post_webhook(&text_event(PAGE_A, ana, "m_b1", "what are your opening hours?", now())).await.0, 200);
    eventually("Ana answered with the new rule", || async {
        let got = texts_to(ana);
        if got == ["We open at 9 every day."] { Ok(()) } else { Err(format!("{got:?}")) }
    })
    .await;

    // A person answers Ana in the Page Inbox: the bot stays silent with her.
    let (body, signature) = app.meta.sim().person_answers(PAGE_A, ana, "Hi, this is Sam from the store").unwrap();
    assert_eq!(app.post_webhook_signed(&body, &signature).await.0, 200);
    eventually("the hold is kept", || async {
        let holds = app.db.store.conversation_holds(PAGE_A, 0).await.unwrap();
        if holds.iter().any(|(p, _)| p == ana) { Ok(()) } else { Err(format!("{holds:?}")) }
    })
    .await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, ana, "m_b2", "thanks Sam!", now())).await.0, 200);

    // Bea asks for a person: told so, and the conversation goes to the Page Inbox.
    assert_eq!(app.post_webhook(&text_event(PAGE_A, bea, "m_b3", "Can I talk to a person?", now())).await.0, 200);
    eventually("Bea passed to the Page Inbox", || async {
        let owners = app.meta.sim().thread_owners();
        if owners[format!("{PAGE_A}:{bea}")] == "263902037430900" { Ok(()) } else { Err(format!("{owners}")) }
    })
    .await;
    assert_eq!(texts_to(bea), ["Thanks! Someone from our team will answer you here shortly."]);
    assert_eq!(app.post_webhook(&text_event(PAGE_A, bea, "m_b4", "hello?", now())).await.0, 200);
    finished().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!((texts_to(ana).len(), texts_to(bea).len()), (1, 1), "the bot stayed silent with both");

    // The conversation view says so, and Ana is handed back to the bot from her conversation.
    c.goto(&app.url("/portal")).await.unwrap();
    click(&c, &format!("section[data-page='{PAGE_A}'] a.conversations")).await;
    let list = wait_for_text(&c, "Conversations on").await;
    assert_eq!(list.matches("A person is handling this conversation").count(), 2, "{list}");
    shots.take(&c, "10-conversations").await;
    click(&c, &format!("section[data-customer='{ana}'] a.open")).await;
    let talk = wait_for_text(&c, "Hi, this is Sam from the store").await;
    for said in ["thanks Sam!", "a person was handling this conversation", "We open at 9 every day.", "Answered"] {
        assert!(talk.contains(said), "{said:?} in {talk}");
    }
    shots.take(&c, "11-conversation").await;
    click(&c, ".hand-back").await;
    wait_for_text(&c, "The conversation is the bot's again").await;
    assert_eq!(app.post_webhook(&text_event(PAGE_A, ana, "m_b5", "are you open now?", now())).await.0, 200);
    eventually("Ana answered by the bot again", || async {
        if texts_to(ana).len() == 2 { Ok(()) } else { Err(format!("{:?}", texts_to(ana))) }
    })
    .await;

    // Bea, passed to the Page Inbox, is handed back too: the conversation is taken back at Meta.
    c.goto(&app.url(&format!("/portal/pages/{PAGE_A}/conversations/{bea}"))).await.unwrap();
    wait_for_text(&c, "Can I talk to a person?").await;
    click(&c, ".hand-back").await;
    wait_for_text(&c, "The conversation is the bot's again").await;
    let owners = app.meta.sim().thread_owners();
    assert_eq!(owners[format!("{PAGE_A}:{bea}")], meta_sim::config::DEFAULT_APP_ID.to_string());
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_every_pages_last_24_hours_as_charts_in_a_real_browser_on_a_desk_and_a_phone() {
    let Some(driver) = chromedriver() else { return };
    let app: TestApp = spawn_app(Options::default()).await;
    add_user(&app, "ops@switchboard.example", Role::Operator, None).await;
    // Live data: customers write to page A, and the bot answers them.
    for i in 0..6 {
        let body = crate::app::text_event(PAGE_A, &format!("71000000{i:02}"), &format!("m_chart_{i}"), "hours?", 1 + i);
        assert_eq!(app.post_webhook(&body).await.0, 200);
    }
    app.wait_for_sent(6).await;
    // Each node writes what it counted every 15 s.
    eventually_within(Duration::from_secs(40), "the Page's history written", || async {
        let n = app.db.count("page_history").await;
        if n >= 2 { Ok(()) } else { Err(format!("{n} rows")) }
    })
    .await;

    let c = browser(&driver).await;
    let shots = Shots::new();
    sign_in_as(&c, &app, "ops@switchboard.example").await;
    let body = wait_for_text(&c, "All clients").await;
    assert!(body.contains("The last 24 hours") || body.contains("the last 24 hours"), "{body}");
    let events = c.find(Locator::Id(&format!("page-{PAGE_A}-events"))).await.unwrap().text().await.unwrap();
    assert!(events.contains("Events in") && events.contains("in 24 h"), "{events}");
    let answers = c.find(Locator::Id(&format!("page-{PAGE_A}-answers"))).await.unwrap().text().await.unwrap();
    assert!(answers.contains("6 in 24 h"), "the six answers, in words: {answers}");
    let charts = c.find_all(Locator::Css("figure.chart svg")).await.unwrap();
    assert!(charts.len() >= 15, "five charts per Page and per client: {}", charts.len());
    let bars = c.find_all(Locator::Css(&format!("#page-{PAGE_A}-answers rect"))).await.unwrap();
    assert!(!bars.is_empty(), "the answers drawn as bars");
    shots.take(&c, "09-operator-charts").await;
    // On a phone the charts wrap, one under another, and nothing is wider than the screen.
    c.set_window_size(390, 844).await.unwrap();
    let overflow =
        c.execute("return document.documentElement.scrollWidth <= window.innerWidth + 1;", vec![]).await.unwrap();
    assert_eq!(overflow, json!(true), "nothing wider than a phone's screen");
    shots.take(&c, "10-operator-charts-phone").await;
    // The Page's own history page: 24 hours and 30 days.
    c.goto(&app.url(&format!("/portal/pages/{PAGE_A}/health"))).await.unwrap();
    let body = wait_for_text(&c, "The last 30 days").await;
    assert!(body.contains("The last 24 hours"), "{body}");
    shots.take(&c, "11-page-health").await;
    c.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_sees_its_ai_answers_tries_them_and_is_told_when_the_budget_is_used_up_in_a_real_browser() {
    use switchboard::store::{AiSetting, ResponderSetting};
    const KEY: &str = "sk-browser-test-key-never-on-a-page";
    let Some(driver) = chromedriver() else { return };
    let model =
        meta_sim::spawn(meta_sim::SimConfig { ai_key: Some(KEY.to_owned()), ..Default::default() }).await.unwrap();
    let base_url = format!("{}/v1", model.url().trim_end_matches('/'));
    let app: TestApp = spawn_app(Options::with(move |s| {
        let toml = format!("[ai]\nbase_url = \"{base_url}\"\nmodel = \"m\"\napi_key = \"{KEY}\"\n");
        s.ai = switchboard::config::Settings::from_toml(&toml).unwrap().ai;
    }))
    .await;
    let woodstock = app.clients[0].id;
    let knowledge = "Opening hours: 9am to 9pm every day.\nReturns: within 30 days with the receipt.";
    let ai = AiSetting { knowledge: knowledge.into(), monthly_tokens: Some(100_000), known_links_only: false };
    app.db.store.set_responder(woodstock, &ResponderSetting::Ai(ai.clone())).await.unwrap();
    client_user(&app, woodstock).await;
    let c = browser(&driver).await;
    let shots = Shots::new();
    sign_in(&c, &app).await;
    wait_for_text(&c, "Your Pages").await;

    // The part shows the knowledge and an untouched month.
    click(&c, "#edit-bot").await;
    let page = wait_for_text(&c, "AI answers").await;
    assert!(page.contains("Returns: within 30 days with the receipt."), "{page}");
    assert!(page.contains("0 of 100,000 tokens used"), "{page}");

    // "Try it" asks the model for real and says what it counted.
    type_into(&c, "input[name=message]", "What are your opening hours?").await;
    click(&c, "#ai-try").await;
    let tried = wait_for_text(&c, "The model answered:").await;
    assert!(tried.contains("Opening hours: 9am to 9pm every day."), "{tried}");
    assert!(tried.contains("This counted"), "{tried}");
    assert!(!tried.contains("0 of 100,000 tokens used"), "the month counts the try: {tried}");
    assert_eq!(model.sim().ai_requests().calls, 1);
    shots.take(&c, "14-ai-tried").await;
    let source = c.source().await.unwrap();
    assert!(!source.contains(KEY), "the API key is on the page");

    // A used-up month: said in plain words, and "Try it" makes no call.
    app.db
        .store
        .set_responder(woodstock, &ResponderSetting::Ai(AiSetting { monthly_tokens: Some(1), ..ai }))
        .await
        .unwrap();
    c.goto(&app.url("/portal/bot")).await.unwrap();
    let used_up = wait_for_text(&c, "This month's AI budget is used up").await;
    assert!(used_up.contains("your rules answer your customers until"), "{used_up}");
    type_into(&c, "input[name=message]", "Can I return a sofa?").await;
    click(&c, "#ai-try").await;
    wait_for_text(&c, "no call was made").await;
    assert_eq!(model.sim().ai_requests().calls, 1, "no call once the budget is used up");
    shots.take(&c, "15-ai-budget-used-up").await;

    // The client turns on "known links only" itself; it is stored and audited.
    click(&c, "#ai-links").await;
    click(&c, "#ai-links-save").await;
    wait_for_text(&c, "Saved. Answers from the next message on follow it.").await;
    let Some(ResponderSetting::Ai(kept)) = app.db.store.client_settings(woodstock).await.unwrap().map(|c| c.responder)
    else {
        panic!("still ai")
    };
    assert!(kept.known_links_only);
    let audit = app.db.store.recent_audit(20).await.unwrap();
    assert!(audit.iter().any(|a| a.action == "client.ai_links_set"), "{audit:?}");
    c.close().await.unwrap();
}
