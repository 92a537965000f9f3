//! `switchboard demo`: the whole loop on one machine, with no Facebook app and no internet. It starts the
//! Meta stand-in and Switchboard (embedded SQLite, `data/demo.db`) on free 127.0.0.1 ports, creates a demo
//! client and a portal user with a one-time password, and once a Page is connected through the portal,
//! sends a gentle stream of signed webhook events so badges, counters and replies move. Ctrl-C stops it.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use meta_sim::webhook::{GenConfig, GenPage, Generator, Kind};
use secrecy::{ExposeSecret as _, SecretString};
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::domain::{ClientId, ClientSlug, Email, Role};
use crate::secrets::tokens::random_token;
use crate::startup::{self, Application};
use crate::store::{AiSetting, IntegrationStatus, NewUser, ResponderSetting, Store};

/// What the demo client's AI answers know (`client set-responder demo-outlet ai --knowledge FILE` replaces it).
const DEMO_KNOWLEDGE: &str = "# Demo Outlet
- Opening hours: we are open 9am to 9pm, Monday to Saturday, and 11am to 6pm on Sunday.
- Delivery: we deliver furniture within 50 miles for a flat fee; delivery takes 3 to 5 days.
- Returns: unused items can be returned within 30 days with the receipt.
- Location: 123 Main Street, next to the post office, with free parking.
- Sofas, mattresses and dining sets are in stock in the showroom; ask a person for a specific model.
";

pub async fn run(mut settings: Settings) -> anyhow::Result<()> {
    let app_secret = random_token();
    let meta = meta_sim::spawn(meta_sim::SimConfig {
        app_id: "1234567890".to_owned(),
        app_secret: app_secret.clone(),
        ..meta_sim::SimConfig::default()
    })
    .await
    .context("cannot start the Meta stand-in")?;
    let listener = TcpListener::bind("127.0.0.1:0").await.context("cannot listen on 127.0.0.1")?;
    let public = format!("http://{}", listener.local_addr()?);
    meta.sim().register_redirect_uri(&format!("{public}/api/auth/facebook/callback"));

    if settings.database.url.expose_secret().starts_with("sqlite:data/switchboard.db") {
        settings.database.url = SecretString::from("sqlite:data/demo.db".to_owned());
    }
    // The demo's database gets a key file of its own next to it, made on the first run (the only place
    // Switchboard makes a key by itself: `serve` without keys refuses to start).
    if settings.vault.keys.is_none() && settings.vault.key_file.is_none() {
        let url = settings.database.url.expose_secret().to_owned();
        if let Some(db) = crate::store::sqlite::database_path(&url).filter(|_| url.starts_with("sqlite:")) {
            let mut name = db.into_os_string();
            name.push(".keys");
            let path = std::path::PathBuf::from(name);
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            }
            crate::secrets::vault::KeySource::GenerateIfMissing(path.clone()).load()?;
            settings.vault.key_file = Some(path);
        }
    }
    settings.server.public_url = public.parse().context("public URL")?;
    settings.server.metrics_bind = "127.0.0.1:0".parse().context("metrics address")?;
    settings.meta.app_id = Some("1234567890".to_owned());
    settings.meta.app_secrets = vec![SecretString::from(app_secret.clone())];
    settings.meta.verify_token = Some(SecretString::from(random_token()));
    settings.meta.graph_url = meta.url().parse().context("stand-in URL")?;
    settings.meta.oauth_dialog_url = meta.url().parse().context("stand-in URL")?;
    // AI answers come from the stand-in's chat completions endpoint, unless a real model server is configured.
    if settings.ai.is_none() {
        let ai = format!("[ai]\nbase_url = \"{}/v1\"\nmodel = \"meta-sim\"\n", meta.url().trim_end_matches('/'));
        settings.ai = Settings::from_toml(&ai).context("the stand-in's AI settings")?.ai;
    }

    let app = Application::build_with_listener(&settings, listener).await?;
    let metrics = app.metrics_addr();
    let store = startup::open_store(&settings).await?;
    let slug = ClientSlug::parse("demo-outlet").context("slug")?;
    let client = match store.client_by_slug(&slug).await? {
        Some(c) => c,
        None => {
            let client = store.create_client("Demo Outlet", &slug).await?;
            let ai = AiSetting { knowledge: DEMO_KNOWLEDGE.to_owned(), monthly_tokens: None, known_links_only: true };
            store.set_responder(client.id, &ResponderSetting::Ai(ai)).await?;
            client
        }
    };
    let email =
        Email::parse(&format!("demo-{}@switchboard.local", &random_token()[..6].to_lowercase())).context("email")?;
    let password = random_token()[..16].to_owned();
    let hash = crate::secrets::password::hash(SecretString::from(password.clone())).await?;
    store
        .create_user(&NewUser {
            email: email.clone(),
            password_hash: hash,
            role: Role::Client,
            client_id: Some(client.id),
            // Printed once for the person running the demo, who uses it right away.
            must_change_password: false,
        })
        .await?;

    println!("Switchboard demo is running (Ctrl-C stops it).");
    println!("  Portal:     {public}/portal");
    println!("  Sign in as: {email}");
    println!("  Password:   {password}   (shown once)");
    println!("  Meta stand-in: {}  (its state: {}/_sim/state)", meta.url(), meta.url());
    println!("  Metrics:    http://{metrics}/metrics");
    println!(
        "Press \"Connect with Facebook\", continue on the stand-in's consent page, and watch the Pages come alive."
    );

    let webhook = format!("{public}/api/facebook-webhook");
    let driver = tokio::spawn(drive_events(store.clone(), client.id, webhook, app_secret, meta.sim().clone()));
    let result = app.run_until_stopped(startup::shutdown_signal()).await;
    driver.abort();
    drop(meta);
    result
}

/// Every two seconds, one signed message per connected demo Page, as Meta would send it.
async fn drive_events(store: Store, client_id: ClientId, webhook: String, secret: String, sim: Arc<meta_sim::Sim>) {
    let http = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        let signature = meta_sim::webhook::signature(&secret, &body);
        http.post(&webhook)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
    };
    let mut seed = 1;
    // Rounds each connected Page has had, so each gets the same little story: a person at the store answers
    // its first customer (the bot falls silent with them), and its second customer asks for a person.
    let mut rounds: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let Ok(integrations) = store.list_integrations().await else { continue };
        for i in integrations.iter().filter(|i| i.client_id == client_id && i.status == IntegrationStatus::Connected) {
            let round = rounds.entry(i.page_id.to_string()).or_default();
            *round += 1;
            let page = i.page_id.as_str();
            match *round {
                4 => {
                    let customer = Generator::psid(page, 0);
                    if let Ok((body, _)) = sim.person_answers(page, &customer, "Hi, this is Ana from the store") {
                        let _ = post(body).await;
                    }
                }
                7 => {
                    let (customer, ts) = (Generator::psid(page, 1), crate::clock::now().timestamp_millis());
                    let mid = format!("m_demo_person_{page}");
                    let _ = post(meta_sim::webhook::text_message(page, &customer, &mid, "Can I talk to a person?", ts))
                        .await;
                }
                _ => {}
            }
            seed += 1;
            let ig = i.instagram_account_id.as_ref().map(|ig| ig.to_string());
            let mut generator = Generator::new(GenConfig {
                pages: vec![GenPage { id: i.page_id.to_string(), instagram: ig.clone() }],
                users: 5,
                kinds: if ig.is_some() {
                    vec![Kind::Text, Kind::Postback, Kind::Instagram]
                } else {
                    vec![Kind::Text, Kind::Postback]
                },
                batch: 1,
                duplicate_rate: 0.0,
                seed,
                ..GenConfig::default()
            });
            sim.register_instagram_users(generator.instagram_users().iter().map(String::as_str));
            let _ = post(generator.next_body()).await;
        }
    }
}
