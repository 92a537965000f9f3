//! Ingest load benchmark: Switchboard's webhook front door against a bare warp "verify + parse + 200"
//! baseline, measured in the same run on this machine, with the same pre-signed bodies.
//!
//! Each server runs on its own single-threaded runtime (one core's worth of work, including Switchboard's
//! tenant actors); the load generator runs on another runtime. "front door only" sends events for pages no
//! client owns (verified, parsed, routed, acknowledged, counted; no bot, no reply); "ack + bot + reply"
//! sends events for 50 connected pages, so the same core also runs the bots and one Send API call per event
//! (to the Meta stand-in); "ack + relay bot + reply" is the same with the client's own bot behind the relay (a
//! local bot on a core of its own). In durable mode on PostgreSQL, "commit + 200" sends echoes (committed, never
//! answered) and "+ bot + reply" sends text messages. Prints req/s, p50, p99 and the ratio to the baseline,
//! and durable ingest against what PostgreSQL alone takes for the same rows, measured first in the same run.
//! If Node is installed, the same echoes also go to a peer written the usual way (`benches/peers/express`:
//! Express + pg, verify, store, 200), and durable ingest is given as a multiple of it.
//!
//! Then end-to-end latency at a fixed rate (LATENCY_RATE, default 5000 events/s, for 4 s): from the moment
//! each signed webhook is handed to the HTTP client to the moment the stand-in accepts its reply, for
//! memory and durable (PostgreSQL) mode, in LATENCY_ROUNDS rounds (default 3) taking turns between the modes.
//! `cargo bench --bench ingest` (INGEST_REQUESTS=N to change the count, default 20000; INGEST_ONLY=TEXT to
//! run only the rows whose name contains TEXT, besides the baseline; LATENCY_RATE=0 to skip the latency part;
//! COMMIT_WRITERS=N for the durable servers' inbox.commit_writers, default 1; INGEST_SEND_RATE=N for each page's
//! send rate in the throughput rows, default 80).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

mod common;
mod peers;

use common::{
    PAGES, SECRET, checkpoint, drop_database, generate, now_us, on_one_core, page_id, scratch_database, stand_in,
    switchboard,
};
use meta_sim::sender::{SendPlan, SendReport, run};
use meta_sim::webhook::Kind;
use secrecy::SecretString;
use switchboard::meta::webhook::{WebhookSecrets, parse};
use warp::Filter as _;

/// A client's own bot behind the relay, on a core of its own: one reply to every event.
fn relay_bot() -> std::net::SocketAddr {
    on_one_core(|listener| async move {
        let bot = warp::post().map(|| warp::reply::json(&serde_json::json!({ "replies": ["Thanks, we got it."] })));
        warp::serve(bot).incoming(listener).run().await;
    })
}

/// A seeded Switchboard (memory inbox) whose client answers through the relay to `bot`.
fn with_relay(
    db: String,
    graph_url: String,
    tokens: Arc<HashMap<String, String>>,
    send_rate: u32,
    bot: std::net::SocketAddr,
) -> std::net::SocketAddr {
    let mut settings = common::settings(&db, &graph_url, &common::key_entry(), false, send_rate, "");
    settings.engine.relay.allow_private = true;
    on_one_core(move |listener| async move {
        common::seed(&settings, &tokens).await;
        let store = switchboard::startup::open_store(&settings).await.expect("store");
        let ring = switchboard::startup::open_vault(&settings, &store).await.expect("vault");
        let slug = switchboard::domain::ClientSlug::parse("bench").expect("slug");
        let client = store.client_by_slug(&slug).await.expect("client").expect("the bench client");
        let secret = ring
            .seal_relay_secret(client.id, &SecretString::from("bench-relay-secret-0123456789".to_owned()))
            .expect("seal");
        let relay = switchboard::store::ResponderSetting::Relay { url: format!("http://{bot}/bot"), secret };
        store.set_responder(client.id, &relay).await.expect("relay");
        store.close().await;
        let app = switchboard::startup::Application::build_with_listener(&settings, listener).await.expect("app");
        app.run_until_stopped(std::future::pending()).await.expect("serve");
    })
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

fn main() {
    let requests: usize = std::env::var("INGEST_REQUESTS").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let concurrency: usize = std::env::var("INGEST_CONCURRENCY").ok().and_then(|n| n.parse().ok()).unwrap_or(64);
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (sim, tokens) = stand_in(&load, 0);
    let dir = tempfile::tempdir().expect("tempdir");
    // Each page's Send API rate (`engine.send_rate_per_page`): the most replies a second the rows that answer
    // can make is 50 times it.
    let send_rate: u32 = std::env::var("INGEST_SEND_RATE").ok().and_then(|n| n.parse().ok()).unwrap_or(80);
    let memory = switchboard(
        format!("sqlite:{}", dir.path().join("bench.db").display()),
        sim.url(),
        tokens.clone(),
        false,
        send_rate,
    );
    let mut targets = vec![
        ("baseline: warp verify+parse+200", baseline(), Bodies::Texts),
        ("switchboard, front door only", memory, Bodies::Unowned),
        ("switchboard, ack + bot + reply", memory, Bodies::Texts),
    ];
    // The same, with the client's own bot behind the relay (a local bot that answers each event with one reply).
    let relay = with_relay(
        format!("sqlite:{}", dir.path().join("relay.db").display()),
        sim.url(),
        tokens.clone(),
        send_rate,
        relay_bot(),
    );
    targets.push(("switchboard, ack + relay bot + reply", relay, Bodies::Texts));
    // Durable mode on PostgreSQL (DATABASE_URL names the server; a scratch database is made and dropped).
    let pg = load.block_on(scratch_database("ingest"));
    if let Some(url) = &pg {
        let durable = switchboard(url.clone(), sim.url(), tokens.clone(), true, send_rate);
        targets.push(("durable: commit + 200 (echoes)", durable, Bodies::Echoes));
        targets.push(("durable: + bot + reply", durable, Bodies::Texts));
    }
    let only = std::env::var("INGEST_ONLY").unwrap_or_default();
    // The Express + pg peer (benches/peers/express), if Node is installed: the same echoes, stored before its 200.
    const PEER: &str = "peer: Express + pg, commit + 200";
    let peer_db = if PEER.contains(only.as_str()) { load.block_on(scratch_database("peer")) } else { None };
    let peer = peer_db.as_deref().and_then(peers::express);
    if let Some(peer) = &peer {
        targets.push((PEER, peer.addr, Bodies::Echoes));
    }
    // The same bodies for every server: text messages to the 50 pages, 100 users each.
    let bodies = generate("", Kind::Text, 7, requests);
    // The same events for pages no client owns: acknowledged and counted, never answered.
    let unowned = generate("9", Kind::Text, 7, requests);
    // Echoes of the pages' own messages: committed and finished, but never answered (durable ingest alone).
    let echoes = generate("", Kind::Echo, 8, requests);
    // What PostgreSQL itself takes for the same rows (the inbox rows of the echoes, as the server builds
    // them), measured on a database of its own.
    let postgres_alone = load.block_on(async {
        let url = scratch_database("alone").await?;
        let rate = batch_insert_rate(&url, &echoes).await;
        drop_database(&url).await;
        Some(rate)
    });
    std::thread::sleep(Duration::from_millis(500));

    targets.retain(|(name, ..)| name.starts_with("baseline") || name.contains(only.as_str()));
    let mut rows: Vec<(&str, SendReport)> = Vec::new();
    for (name, addr, kind) in targets {
        let bodies = match kind {
            Bodies::Texts => &bodies,
            Bodies::Unowned => &unowned,
            Bodies::Echoes => &echoes,
        };
        let plan = SendPlan {
            target: format!("http://{addr}/api/facebook-webhook"),
            app_secret: SECRET.to_owned(),
            count: requests,
            rate: None,
            concurrency,
            timeout: Duration::from_secs(30),
        };
        // Warm up connections and caches, then measure.
        let mut warm = bodies.iter().cycle().cloned();
        load.block_on(run(&SendPlan { count: 2000.min(requests), ..plan.clone() }, || warm.next().unwrap_or_default()));
        let mut it = bodies.iter().cloned();
        let report = load.block_on(run(&plan, || it.next().unwrap_or_default()));
        assert_eq!(report.acknowledged as usize, requests, "{name}: every request must be acknowledged: {report:?}");
        rows.push((name, report));
        // The replies of a row are paced by the send limits and go on after its last 200: let them finish,
        // so the next row is measured on a quiet machine.
        let quiet = load.block_on(sim.sim().until_quiet(Duration::from_millis(500), Duration::from_secs(120)));
        quiet.expect("the replies of the row finish");
    }
    let base = rows[0].1.throughput();
    println!(
        "\ningest, {requests} signed webhook POSTs, {concurrency} concurrent, each server on one core ({} cores here)",
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
    if let (Some(rate), Some((_, durable))) = (postgres_alone, rows.iter().find(|(n, _)| n.contains("echoes"))) {
        println!(
            "\nPostgreSQL alone, the same rows in batches of 64 (one transaction each): {rate:.0} rows/s; \
             durable ingest (commit + 200) is {:.0}% of it",
            100.0 * durable.throughput() / rate
        );
    }
    if let (Some((_, durable)), Some((_, express))) =
        (rows.iter().find(|(n, _)| n.contains("echoes")), rows.iter().find(|(n, _)| n.starts_with("peer")))
    {
        println!(
            "durable ingest (commit + 200) is {:.1}× the Express + pg peer with the same driver",
            durable.throughput() / express.throughput()
        );
    }
    drop(peer);
    for url in [pg, peer_db].into_iter().flatten() {
        load.block_on(drop_database(&url));
    }
    let sends = sim.sim().messages_sent();
    println!("(the stand-in accepted {sends} replies during these runs)");
    latency(&load, dir.path());
}

/// End-to-end latency at a fixed rate, memory and durable mode, each on its own server (one core), in
/// LATENCY_ROUNDS rounds (default 3) that take turns between the modes, so the spread the machine's noise
/// makes is seen rather than one lucky or unlucky run.
fn latency(load: &tokio::runtime::Runtime, dir: &std::path::Path) {
    let rate: f64 = std::env::var("LATENCY_RATE").ok().and_then(|n| n.parse().ok()).unwrap_or(5000.0);
    let rounds: usize = std::env::var("LATENCY_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(3).max(1);
    if rate <= 0.0 {
        return;
    }
    let count = (rate * 4.0) as usize;
    // Every reply is recorded: a warm-up and the rounds, per mode.
    let (sim, tokens) = stand_in(load, 2 * (rounds + 1) * count);
    // Meta's per-page send limits are far above 100/s; 50 pages share the rate.
    let send_rate = 1000;
    let mut targets = vec![(
        "memory (SQLite)",
        Some(switchboard(
            format!("sqlite:{}", dir.join("latency.db").display()),
            sim.url(),
            tokens.clone(),
            false,
            send_rate,
        )),
    )];
    let pg = load.block_on(scratch_database("latency"));
    targets.push((
        "durable (PostgreSQL)",
        pg.clone().map(|url| switchboard(url, sim.url(), tokens.clone(), true, send_rate)),
    ));
    println!(
        "\nwebhook → Send API latency at {rate:.0} events/s for 4 s (one event per webhook, 50 pages), {rounds} rounds"
    );
    println!(
        "{:<24} {:>6} {:>12} {:>10} {:>10} {:>10} {:>12}",
        "mode", "round", "answered", "p50", "p99", "max", "ack p99"
    );
    let plan = |addr: std::net::SocketAddr, count: usize| SendPlan {
        target: format!("http://{addr}/api/facebook-webhook"),
        app_secret: SECRET.to_owned(),
        count,
        rate: Some(rate),
        concurrency: 256,
        timeout: Duration::from_secs(30),
    };
    // Warm-up at the same rate for a second (other senders, not measured), and its replies finish first, so
    // every reply counted later is a measured one.
    for (k, (_, addr)) in targets.iter().enumerate() {
        let Some(addr) = *addr else { continue };
        let warm: Vec<Vec<u8>> = (0..rate as usize)
            .map(|i| {
                let (page, sender, mid) = (page_id(i % PAGES), format!("9{k}{i:08}"), format!("m_w{k}_{i}"));
                meta_sim::webhook::text_message(&page, &sender, &mid, "hi", 1)
            })
            .collect();
        let mut w = warm.iter().cloned();
        load.block_on(run(&plan(addr, warm.len()), || w.next().unwrap_or_default()));
        load.block_on(sim.sim().until_quiet(Duration::from_millis(300), Duration::from_secs(60)))
            .expect("the warm-up's replies finish");
    }
    let mut p99s: Vec<Vec<Duration>> = vec![Vec::new(); targets.len()];
    for round in 0..rounds {
        // The ingest rows (and the rounds before) left PostgreSQL dirty buffers to write out: write them now,
        // so each round starts from the same state and does not time an earlier checkpoint.
        load.block_on(checkpoint());
        std::thread::sleep(Duration::from_millis(500));
        for (k, (name, addr)) in targets.iter().enumerate() {
            let Some(addr) = *addr else { continue };
            let sender = |i: usize| format!("8{k}{round}{i:07}");
            let bodies: Vec<Vec<u8>> = (0..count)
                .map(|i| {
                    let ts = 1_700_000_000_000 + i as i64;
                    let mid = format!("m_lat{k}_{round}_{i}");
                    meta_sim::webhook::text_message(&page_id(i % PAGES), &sender(i), &mid, "hi", ts)
                })
                .collect();
            let before = sim.sim().messages_sent();
            let mut sent_at = Vec::with_capacity(count);
            let mut next = bodies.iter().cloned();
            let ack = load.block_on(run(&plan(addr, count), || {
                sent_at.push(now_us());
                next.next().unwrap_or_default()
            }));
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while sim.sim().messages_sent() < before + count as u64 && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let replied: HashMap<String, i64> =
                sim.sim().messages().into_iter().map(|m| (m.recipient_id, m.at_us)).collect();
            let mut e2e: Vec<i64> =
                (0..count).filter_map(|i| replied.get(&sender(i)).map(|at| at - sent_at[i])).collect();
            e2e.sort_unstable();
            let pick = |q: f64| {
                let us =
                    e2e.get(((e2e.len() as f64 * q).ceil() as usize).saturating_sub(1)).copied().unwrap_or_default();
                Duration::from_micros(us.max(0) as u64)
            };
            p99s[k].push(pick(0.99));
            println!(
                "{:<24} {:>6} {:>12} {:>10.2?} {:>10.2?} {:>10.2?} {:>12.2?}",
                name,
                round + 1,
                format!("{}/{count}", e2e.len()),
                pick(0.50),
                pick(0.99),
                pick(1.0),
                ack.p99
            );
        }
    }
    for ((name, _), mut p99) in targets.iter().zip(p99s) {
        p99.sort_unstable();
        if let (Some(low), Some(high)) = (p99.first(), p99.last()) {
            println!(
                "{name}: p99 {low:.2?} to {high:.2?} over {} rounds, median {:.2?}",
                p99.len(),
                p99[p99.len() / 2]
            );
        }
    }
    if let Some(url) = pg {
        load.block_on(drop_database(&url));
    }
}

/// Which bodies a row sends.
#[derive(Clone, Copy)]
enum Bodies {
    /// Text messages to the connected pages.
    Texts,
    /// The same messages to pages no client owns.
    Unowned,
    /// Echoes of the connected pages' own messages.
    Echoes,
}

/// What PostgreSQL itself takes: the inbox rows of `bodies`' events, as the server builds them, inserted in
/// batches of 64 with the statement the server uses, one batch at a time.
async fn batch_insert_rate(url: &str, bodies: &[Vec<u8>]) -> f64 {
    let store = switchboard::store::connect(url, 4).await.expect("store");
    store.migrate().await.expect("migrate");
    let rows: Vec<switchboard::store::InboxRow> = bodies
        .iter()
        .flat_map(|body| parse(body).expect("bench bodies parse").events)
        .map(|event| switchboard::inbox::row(&event, &event.account_id, event.wants_reply()).expect("row"))
        .collect();
    let started = std::time::Instant::now();
    for chunk in rows.chunks(64) {
        store.inbox_insert(chunk).await.expect("insert");
    }
    rows.len() as f64 / started.elapsed().as_secs_f64()
}
