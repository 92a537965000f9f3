//! `spawn_app`: Switchboard serving on a free 127.0.0.1 port against a fresh database and an in-process
//! Meta stand-in, with two clients whose pages are connected with real tokens issued by the stand-in.

use std::collections::HashMap;
use std::time::Duration;

use meta_sim::{SimConfig, SimHandle};
use switchboard::config::Settings;
use switchboard::domain::{AccessToken, PageId};
use switchboard::secrets::vault::KeyRing;
use switchboard::startup::Application;
use switchboard::store::{Client, NewIntegration, Store};
use switchboard_actors::Router;

use crate::support::{TestDb, WITHIN, eventually, eventually_within, key_entry, ring};

pub const SECRET: &str = "fixture-app-secret-do-not-use";
pub const VERIFY_TOKEN: &str = "verify-me-please";
pub const PAGE_A: &str = "104711112233445";
pub const PAGE_B: &str = "209822223344556";
pub const IG_A: &str = "17841405822304914";

pub struct TestApp {
    pub addr: std::net::SocketAddr,
    /// Where `/metrics` is served.
    pub metrics_addr: std::net::SocketAddr,
    pub db: TestDb,
    pub meta: SimHandle,
    pub router: Router,
    pub onboarding: switchboard::onboarding::Onboarding,
    /// The durable inbox (durable mode, the default).
    pub inbox: Option<switchboard::inbox::Inbox>,
    pub http: reqwest::Client,
    pub keys: KeyRing,
    /// The key ring's entry, for running the CLI against this app's database.
    pub key_entry: String,
    pub clients: Vec<Client>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// A test's change to Switchboard's settings, made on the typed settings after the rig's own.
pub type Tweak = Box<dyn FnOnce(&mut Settings) + Send>;

/// Options for `spawn_app`.
pub struct Options {
    pub sim: SimConfig,
    pub settings: Tweak,
    /// Connect page A to client "woodstock-outlet" and page B to "rural-king".
    pub connect: bool,
    pub postgres: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { sim: SimConfig::default(), settings: Box::new(|_| {}), connect: true, postgres: true }
    }
}

impl Options {
    /// The defaults, with `tweak` applied to the settings.
    pub fn with(tweak: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        Self { settings: Box::new(tweak), ..Self::default() }
    }
}

pub async fn spawn_app(options: Options) -> TestApp {
    let db = if options.postgres { TestDb::postgres().await } else { TestDb::sqlite().await };
    let meta = meta_sim::spawn(SimConfig { redirect_uris: vec![REDIRECT.to_owned()], ..options.sim }).await.unwrap();
    let entry = key_entry("k1");
    let keys = ring(&entry);
    let clients = if options.connect { seed_tenants(&db.store, &keys, &meta).await } else { Vec::new() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    meta.sim().register_redirect_uri(&format!("{public}/api/auth/facebook/callback"));
    let toml = format!(
        r#"
[server]
bind = "127.0.0.1:0"
metrics_bind = "127.0.0.1:0"
public_url = "{public}"
shutdown_grace_secs = 2
[database]
url = "{db_url}"
max_connections = 5
[vault]
keys = "{key}"
[meta]
app_id = "1234567890"
app_secret = "{SECRET}"
verify_token = "{VERIFY_TOKEN}"
graph_url = "{sim}"
oauth_dialog_url = "{sim}"
[engine]
retry_base_ms = 20
# The tests' relay bots run on loopback, unless a test wants the production rule.
relay_allow_private = true
"#,
        db_url = db.url,
        key = entry,
        sim = meta.url(),
    );
    let mut settings = Settings::from_toml(&toml).unwrap();
    (options.settings)(&mut settings);
    let app = Application::build_with_listener(&settings, listener).await.unwrap();
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let router = app.router().clone();
    let inbox = app.inbox().cloned();
    let onboarding = app.onboarding().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        app.run_until_stopped(async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    // One browser: it keeps its cookies (the OAuth flow's binding, the portal session) like a real one.
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).cookie_store(true).build().unwrap();
    TestApp {
        addr,
        metrics_addr,
        onboarding,
        db,
        meta,
        router,
        inbox,
        http,
        keys,
        key_entry: entry,
        clients,
        stop: Some(stop),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// POSTs `body` to the webhook, signed with the app secret.
    pub async fn post_webhook(&self, body: &[u8]) -> (u16, String) {
        self.post_webhook_signed(body, &meta_sim::webhook::signature(SECRET, body)).await
    }

    pub async fn post_webhook_signed(&self, body: &[u8], signature: &str) -> (u16, String) {
        let resp = self
            .http
            .post(self.url("/api/facebook-webhook"))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    }

    /// Messages the stand-in accepted.
    pub fn sent(&self) -> Vec<meta_sim::SentMessage> {
        self.meta.sim().messages()
    }

    /// Waits until `n` messages were sent.
    pub async fn wait_for_sent(&self, n: usize) -> Vec<meta_sim::SentMessage> {
        self.wait_for_sent_within(n, WITHIN).await
    }

    /// [`TestApp::wait_for_sent`], for many messages paced by the send limits.
    pub async fn wait_for_sent_within(&self, n: usize, within: Duration) -> Vec<meta_sim::SentMessage> {
        eventually_within(within, &format!("{n} messages sent"), || async {
            let sent = self.sent();
            if sent.len() >= n { Ok(sent) } else { Err(format!("{} sent: {sent:?}", sent.len())) }
        })
        .await
    }

    /// What was sent once the engine is done with every event committed so far: a committed event's row is
    /// finished only after its replies were sent (or failed), so whatever it would send has been sent.
    pub async fn settle(&self) -> Vec<meta_sim::SentMessage> {
        eventually("every committed event finished", || async {
            let counts = self.db.store.inbox_counts().await.map_err(|e| e.to_string())?;
            match counts.iter().find(|(status, n)| status == "pending" && *n > 0) {
                Some((_, n)) => Err(format!("{n} pending")),
                None => Ok(()),
            }
        })
        .await;
        self.sent()
    }

    pub async fn metrics(&self) -> String {
        let url = format!("http://{}/metrics", self.metrics_addr);
        self.http.get(url).send().await.unwrap().text().await.unwrap()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub const REDIRECT: &str = "http://127.0.0.1:1/api/auth/facebook/callback";

/// Page tokens by page id, obtained the way Switchboard will: consent, code exchange, long-lived token,
/// /me/accounts.
pub async fn sim_page_tokens(meta: &SimHandle) -> HashMap<String, String> {
    meta_sim::login::page_tokens(&meta.url(), "1234567890", SECRET, REDIRECT, &[PAGE_A, PAGE_B]).await.unwrap()
}

/// Clients "woodstock-outlet" (page A, with Instagram account IG_A) and "rural-king" (page B), their pages
/// connected with real tokens from the stand-in.
pub async fn seed_tenants(store: &Store, keys: &KeyRing, meta: &SimHandle) -> Vec<Client> {
    let tokens = sim_page_tokens(meta).await;
    let mut clients = Vec::new();
    for (slug, page, ig) in [("woodstock-outlet", PAGE_A, Some(IG_A)), ("rural-king", PAGE_B, None)] {
        let client = crate::support::client(store, slug).await;
        connect(store, keys, &client, page, ig, &tokens[page]).await;
        clients.push(client);
    }
    clients
}

/// Stores an integration for `page` with `token` sealed, as the OAuth callback will.
pub async fn connect(store: &Store, keys: &KeyRing, client: &Client, page: &str, ig: Option<&str>, token: &str) {
    let page_id = PageId::parse(page).unwrap();
    store
        .upsert_integration(&NewIntegration {
            client_id: client.id,
            sealed_token: keys.seal(&page_id, &AccessToken::new(token.to_owned())).unwrap(),
            page_id,
            page_name: None,
            instagram_account_id: ig.map(|i| PageId::parse(i).unwrap()),
            permissions_granted: vec!["pages_messaging".to_owned()],
            token_expires_at: None,
            connected_by: None,
        })
        .await
        .unwrap();
}

/// A Messenger text event body for `page` from `sender` (Meta's exact encoding).
pub fn text_event(page: &str, sender: &str, mid: &str, text: &str, timestamp: i64) -> Vec<u8> {
    meta_sim::webhook::text_message(page, sender, mid, text, timestamp)
}

pub fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// Presses a button on the stand-in's consent page for the dialog at `dialog`, ticking every requested
/// permission and `pages`; returns the redirect (to the callback).
pub async fn decide(http: &reqwest::Client, dialog: &url::Url, pages: &[&str], decision: &str) -> String {
    decide_with(http, dialog, pages, None, decision).await
}

/// Like `decide`, ticking only `scopes` when given.
pub async fn decide_with(
    http: &reqwest::Client,
    dialog: &url::Url,
    pages: &[&str],
    scopes: Option<&[&str]>,
    decision: &str,
) -> String {
    crate::support::login::decide(http, dialog, pages, scopes, decision).await.unwrap()
}
