//! Ingest load benchmark: Switchboard's webhook front door against a bare warp "verify + parse + 200"
//! baseline, measured in the same run on this machine, with the same pre-signed bodies.
//!
//! Each server runs on its own single-threaded runtime (one core's worth of work, including Switchboard's
//! tenant actors); the load generator runs on another runtime. "front door only" sends events for pages no
//! client owns (verified, parsed, routed, acknowledged, counted; no bot, no reply); "ack + bot + reply"
//! sends events for 50 connected pages, so the same core also runs the bots and one Send API call per event
//! (to the Meta stand-in). Prints req/s, p50, p99 and the ratio to the baseline.
//! `cargo bench --bench ingest` (INGEST_REQUESTS=N to change the count, default 20000).

use std::sync::Arc;
use std::time::Duration;

use meta_sim::sender::{SendPlan, SendReport, run};
use meta_sim::webhook::{GenConfig, GenPage, Generator, Kind};
use secrecy::SecretString;
use switchboard::config::Settings;
use switchboard::domain::{AccessToken, ClientSlug, PageId};
use switchboard::startup::Application;
use switchboard::store::NewIntegration;
use switchboard::webhook::{WebhookSecrets, parse};
use warp::Filter as _;

const SECRET: &str = "bench-app-secret-0123456789";
const PAGES: usize = 50;

fn page_id(i: usize) -> String {
    format!("1047111122{:05}", i)
}

/// Serves `run` on a fresh single-threaded runtime on its own OS thread; returns the address.
fn on_one_core<F, Fut>(make: F) -> std::net::SocketAddr
where
    F: FnOnce(tokio::net::TcpListener) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send addr");
            make(listener).await;
        });
    });
    rx.recv().expect("server started")
}

fn baseline() -> std::net::SocketAddr {
    on_one_core(|listener| async move {
        let secrets = Arc::new(WebhookSecrets::new(&[SecretString::from(SECRET.to_owned())]));
        let route = warp::path!("api" / "facebook-webhook")
            .and(warp::post())
            .and(warp::header::headers_cloned())
            .and(warp::body::bytes())
            .map(move |h: warp::http::HeaderMap, body: bytes::Bytes| {
                let ok = secrets.verify(h.get("x-hub-signature-256").map(|v| v.as_bytes()), &body).is_ok()
                    && parse(&body).is_ok();
                warp::reply::with_status(
                    "EVENT_RECEIVED",
                    if ok { warp::http::StatusCode::OK } else { warp::http::StatusCode::BAD_REQUEST },
                )
            });
        warp::serve(route).incoming(listener).run().await;
    })
}

fn switchboard(db: String, graph_url: String, durable: bool) -> std::net::SocketAddr {
    on_one_core(move |listener| async move {
        let key = switchboard::vault::generate_key_entry(&switchboard::vault::KeyId::parse("bench").expect("id"));
        let key = secrecy::ExposeSecret::expose_secret(&key).to_owned();
        let toml = format!(
            "[database]\nurl = \"{db}\"\n[vault]\nkeys = \"{key}\"\n[meta]\napp_id = \"1234567890\"\napp_secret = \"{SECRET}\"\n\
             verify_token = \"vt\"\ngraph_url = \"{graph_url}\"\n[inbox]\nmode = \"{mode}\"\n[log]\nfilter = \"error\"\n",
            mode = if durable { "durable" } else { "memory" }
        );
        let settings = Settings::from_toml(&toml).expect("settings");
        let store = switchboard::startup::open_store(&settings).await.expect("store");
        let ring = switchboard::startup::open_vault(&settings, store.as_ref()).await.expect("vault");
        let client = store.create_client("Bench", &ClientSlug::parse("bench").expect("slug")).await.expect("client");
        for i in 0..PAGES {
            let page = PageId::parse(&page_id(i)).expect("page");
            let sealed = ring.seal(&page, &AccessToken::new(format!("EAAbench{i}"))).expect("seal");
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
        let app = Application::build_with_listener(&settings, listener).await.expect("app");
        app.run_until_stopped(std::future::pending()).await.expect("serve");
    })
}

fn main() {
    let requests: usize = std::env::var("INGEST_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let sim = load
        .block_on(meta_sim::spawn(meta_sim::SimConfig {
            app_secret: SECRET.to_owned(),
            require_appsecret_proof: false,
            max_recorded: 0,
            ..meta_sim::SimConfig::default()
        }))
        .expect("stand-in");
    let dir = tempfile::tempdir().expect("tempdir");
    let memory = switchboard(format!("sqlite:{}", dir.path().join("bench.db").display()), sim.url(), false);
    let mut targets = vec![
        ("baseline: warp verify+parse+200", baseline(), false),
        ("switchboard, front door only", memory, true),
        ("switchboard, ack + bot + reply", memory, false),
    ];
    // Durable mode on PostgreSQL (DATABASE_URL names the server; a scratch database is made and dropped).
    let pg = load.block_on(scratch_database());
    if let Some(url) = &pg {
        targets.push(("switchboard durable (PostgreSQL)", switchboard(url.clone(), sim.url(), true), false));
    }
    // The same pre-signed-ready bodies for both (text messages to 50 pages, 100 users each).
    let mut generator = Generator::new(GenConfig {
        pages: (0..PAGES).map(|i| GenPage { id: page_id(i), instagram: None }).collect(),
        users: 100,
        kinds: vec![Kind::Text],
        batch: 1,
        duplicate_rate: 0.0,
        seed: 7,
    });
    let bodies: Vec<Vec<u8>> = (0..requests).map(|_| generator.next_body()).collect();
    // The same events for pages no client owns: acknowledged and counted, never answered.
    let mut unowned = Generator::new(GenConfig {
        pages: (0..PAGES).map(|i| GenPage { id: format!("9{}", page_id(i)), instagram: None }).collect(),
        users: 100,
        kinds: vec![Kind::Text],
        batch: 1,
        duplicate_rate: 0.0,
        seed: 7,
    });
    let unowned: Vec<Vec<u8>> = (0..requests).map(|_| unowned.next_body()).collect();
    std::thread::sleep(Duration::from_millis(500));

    let mut rows: Vec<(&str, SendReport)> = Vec::new();
    for (name, addr, front_door_only) in targets {
        let bodies = if front_door_only { &unowned } else { &bodies };
        let plan = SendPlan {
            target: format!("http://{addr}/api/facebook-webhook"),
            app_secret: SECRET.to_owned(),
            count: requests,
            rate: None,
            concurrency: 64,
            timeout: Duration::from_secs(30),
        };
        // Warm up connections and caches, then measure.
        let mut warm = bodies.iter().cycle().cloned();
        load.block_on(run(&SendPlan { count: 2000.min(requests), ..plan.clone() }, || warm.next().unwrap_or_default()));
        let mut it = bodies.iter().cloned();
        let report = load.block_on(run(&plan, || it.next().unwrap_or_default()));
        assert_eq!(report.acknowledged as usize, requests, "{name}: every request must be acknowledged: {report:?}");
        rows.push((name, report));
    }
    let postgres_alone = pg.as_ref().map(|url| load.block_on(batch_insert_rate(url, requests)));
    let base = rows[0].1.throughput();
    println!(
        "\ningest, {requests} signed webhook POSTs, 64 concurrent, each server on one core ({} cores here)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("{:<34} {:>10} {:>10} {:>10} {:>8}", "server", "req/s", "p50", "p99", "ratio");
    for (name, r) in &rows {
        println!(
            "{:<34} {:>10.0} {:>10.2?} {:>10.2?} {:>7.0}%",
            name,
            r.throughput(),
            r.p50,
            r.p99,
            100.0 * r.throughput() / base
        );
    }
    if let (Some(rate), Some((_, durable))) = (postgres_alone, rows.iter().find(|(n, _)| n.contains("durable"))) {
        println!(
            "\nPostgreSQL alone, the same rows in batches of 64 (one transaction each): {rate:.0} rows/s; \
             durable ingest is {:.0}% of it",
            100.0 * durable.throughput() / rate
        );
    }
    if let Some(url) = pg {
        load.block_on(drop_database(&url));
    }
}

fn admin_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A fresh database on the PostgreSQL server, or `None` (with a note) if none is reachable.
async fn scratch_database() -> Option<String> {
    use sqlx::Connection as _;
    let admin = admin_url();
    let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await else {
        eprintln!("no PostgreSQL at {admin}: skipping the durable row");
        return None;
    };
    let name = format!("sb_bench_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.ok()?;
    let mut url = url::Url::parse(&admin).ok()?;
    url.set_path(&format!("/{name}"));
    Some(url.to_string())
}

async fn drop_database(url: &str) {
    use sqlx::Connection as _;
    let name = url.rsplit('/').next().unwrap_or_default().to_owned();
    if let Ok(mut conn) = sqlx::PgConnection::connect(&admin_url()).await {
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
            .execute(&mut conn)
            .await;
    }
}

/// What PostgreSQL itself takes: the inbox rows of `n` events, inserted in batches of 64 per transaction
/// through the same store code, one batch at a time.
async fn batch_insert_rate(url: &str, n: usize) -> f64 {
    let store = switchboard::store::connect(url, 4).await.expect("store");
    let started = std::time::Instant::now();
    let rows: Vec<switchboard::store::InboxRow> = (0..n)
        .map(|i| switchboard::store::InboxRow {
            page_id: page_id(i % PAGES),
            dedup_key: format!("m:alone{i}"),
            event: format!("{{\"x\":\"{}\"}}", "y".repeat(300)),
        })
        .collect();
    for chunk in rows.chunks(64) {
        store.inbox_insert(chunk).await.expect("insert");
    }
    n as f64 / started.elapsed().as_secs_f64()
}
