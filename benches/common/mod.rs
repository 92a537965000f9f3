//! What the benchmarks share: the Meta stand-in with the benchmark's Pages, Switchboard servers each on one
//! core, seeded scratch databases on the PostgreSQL server, and generated webhook bodies.

// Each benchmark uses the part it needs.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use meta_sim::webhook::{GenConfig, GenPage, Generator, Kind};
use switchboard::config::Settings;
use switchboard::domain::{AccessToken, ClientSlug, PageId};
use switchboard::startup::Application;
use switchboard::store::NewIntegration;

pub const SECRET: &str = "bench-app-secret-0123456789";
pub const PAGES: usize = 50;

pub fn page_id(i: usize) -> String {
    format!("1047111122{:05}", i)
}

/// Serves `run` on a fresh single-threaded runtime on its own OS thread; returns the address.
pub fn on_one_core<F, Fut>(make: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    // Named server-0, server-1, … in start order, so a profiler can tell the servers apart.
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("server-{n}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send addr");
                make(listener).await;
            });
        })
        .expect("server thread");
    rx.recv().expect("server started")
}

/// A stand-in whose one user manages the benchmark's pages, and a working Page token for each.
pub fn stand_in(
    load: &tokio::runtime::Runtime,
    max_recorded: usize,
) -> (meta_sim::SimHandle, Arc<HashMap<String, String>>) {
    const REDIRECT: &str = "http://127.0.0.1:1/callback";
    let mut config = meta_sim::SimConfig {
        app_secret: SECRET.to_owned(),
        require_appsecret_proof: false,
        max_recorded,
        redirect_uris: vec![REDIRECT.to_owned()],
        ..meta_sim::SimConfig::default()
    };
    config.users[0].pages = (0..PAGES)
        .map(|i| meta_sim::SimPage {
            id: page_id(i),
            name: format!("Bench {i}"),
            instagram_business_account: None,
            tasks: config.users[0].pages[0].tasks.clone(),
        })
        .collect();
    let sim = load.block_on(meta_sim::spawn(config)).expect("stand-in");
    let pages: Vec<String> = (0..PAGES).map(page_id).collect();
    let pages: Vec<&str> = pages.iter().map(String::as_str).collect();
    let tokens = load
        .block_on(meta_sim::login::page_tokens(&sim.url(), "1234567890", SECRET, REDIRECT, &pages))
        .expect("page tokens");
    assert_eq!(tokens.len(), PAGES, "a token for every page");
    (sim, Arc::new(tokens))
}

/// A fresh key ring entry for a benchmark's servers.
pub fn key_entry() -> String {
    let key = switchboard::secrets::vault::generate_key_entry(
        &switchboard::secrets::vault::KeyId::parse("bench").expect("id"),
    );
    secrecy::ExposeSecret::expose_secret(&key).to_owned()
}

/// Settings for a benchmark server: `durable` inbox or memory, `send_rate` per page, and `extra` TOML.
pub fn settings(db: &str, graph_url: &str, key: &str, durable: bool, send_rate: u32, extra: &str) -> Settings {
    let toml = format!(
        "[server]\nmetrics_bind = \"127.0.0.1:0\"\n[database]\nurl = \"{db}\"\n[vault]\nkeys = \"{key}\"\n[meta]\napp_id = \"1234567890\"\napp_secret = \"{SECRET}\"\n\
         verify_token = \"vt\"\ngraph_url = \"{graph_url}\"\n[engine]\nsend_rate_per_page = {send_rate}\n\
         [inbox]\nmode = \"{mode}\"\ncommit_writers = {writers}\n[log]\nfilter = \"error\"\n{extra}",
        mode = if durable { "durable" } else { "memory" },
        writers = std::env::var("COMMIT_WRITERS").unwrap_or_else(|_| "1".into())
    );
    Settings::from_toml(&toml).expect("settings")
}

/// Connects the benchmark's pages, with their tokens, to one client in the database `settings` names.
pub async fn seed(settings: &Settings, tokens: &HashMap<String, String>) {
    let store = switchboard::startup::open_store(settings).await.expect("store");
    let ring = switchboard::startup::open_vault(settings, &store).await.expect("vault");
    let client = store.create_client("Bench", &ClientSlug::parse("bench").expect("slug")).await.expect("client");
    for i in 0..PAGES {
        let page = PageId::parse(&page_id(i)).expect("page");
        let sealed = ring.seal(&page, &AccessToken::new(tokens[page.as_str()].clone())).expect("seal");
        store
            .upsert_integration(&NewIntegration {
                client_id: client.id,
                page_id: page,
                page_name: None,
                instagram_account_id: None,
                sealed_token: sealed,
                permissions_granted: vec![],
                token_expires_at: None,
                connected_by: None,
            })
            .await
            .expect("integration");
    }
    store.close().await;
}

/// Switchboard with `settings`, on a core of its own (seeding the database first if `tokens` are given).
pub fn serve(settings: Settings, tokens: Option<Arc<HashMap<String, String>>>) -> std::net::SocketAddr {
    on_one_core(move |listener| async move {
        if let Some(tokens) = tokens {
            seed(&settings, &tokens).await;
        }
        let app = Application::build_with_listener(&settings, listener).await.expect("app");
        app.run_until_stopped(std::future::pending()).await.expect("serve");
    })
}

/// One seeded Switchboard (memory or durable inbox) on a core of its own.
pub fn switchboard(
    db: String,
    graph_url: String,
    tokens: Arc<HashMap<String, String>>,
    durable: bool,
    send_rate: u32,
) -> std::net::SocketAddr {
    serve(settings(&db, &graph_url, &key_entry(), durable, send_rate, ""), Some(tokens))
}

/// `n` single-event bodies of `kind` for the benchmark's pages (their ids prefixed with `prefix`).
pub fn generate(prefix: &str, kind: Kind, seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut generator = Generator::new(GenConfig {
        pages: (0..PAGES).map(|i| GenPage { id: format!("{prefix}{}", page_id(i)), instagram: None }).collect(),
        users: 100,
        kinds: vec![kind],
        batch: 1,
        duplicate_rate: 0.0,
        seed,
        ..GenConfig::default()
    });
    (0..n).map(|_| generator.next_body()).collect()
}

pub fn now_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

pub fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// Asks the PostgreSQL server for a checkpoint (needs a superuser or pg_checkpoint; skipped if refused).
pub async fn checkpoint() {
    use sqlx::Connection as _;
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await
        && let Err(err) = sqlx::query("CHECKPOINT").execute(&mut conn).await
    {
        eprintln!("no checkpoint before the latency part: {err}");
    }
}

/// A fresh database on the PostgreSQL server, or `None` (with a note) if none is reachable.
pub async fn scratch_database(purpose: &str) -> Option<String> {
    use sqlx::Connection as _;
    let admin = admin_url();
    let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
        eprintln!("no PostgreSQL at {admin}: skipping the durable row");
        return None;
    };
    let name = format!("sb_bench_{purpose}_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.ok()?;
    let mut url = url::Url::parse(&admin).ok()?;
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

pub async fn drop_database(url: &str) {
    use sqlx::Connection as _;
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await;
    }
}
