//! A cluster on one PostgreSQL database: three real `switchboard serve` processes, loopback only and bounded.
//! The test plays Meta (each webhook to a random node, and redelivery of whatever got no 200) and the stand-in
//! plays the Send API, counting per-Page rate violations. A node is killed, paused past its lease, and every
//! node is restarted in turn; every accepted event must be answered exactly once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use meta_sim::SimConfig;

use crate::app::{PAGE_A, PAGE_B};
use crate::faults::{Delivery, PAGES, deliver_to, redeliver_to};
use crate::rig::{Rig, SETTLE};
use crate::support::{Server, TestDb, eventually_within};

/// The lease: short, so failover is quick to see.
const TTL: Duration = Duration::from_secs(2);

/// Meta's per-Page limit in the stand-in, and the pace Switchboard keeps under it.
const META_RATE: u32 = 500;

fn node(rig: &Rig, name: &str) -> Server {
    rig.serve_with(&[
        ("SWITCHBOARD_CLUSTER_MODE", "postgres"),
        ("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", "2"),
        ("SWITCHBOARD__CLUSTER__NODE_NAME", name),
    ])
}

async fn rig() -> Rig {
    Rig::with_sim(TestDb::postgres().await, SimConfig { rate_limit_per_page: META_RATE, ..SimConfig::default() }).await
}

/// The name of the live node that owns `page`, once one does.
async fn owner_of(rig: &Rig, page: &str) -> String {
    eventually_within(SETTLE, &format!("{page} owned by a live node"), || async {
        let nodes = rig.db.store.cluster_nodes().await.map_err(|e| e.to_string())?;
        let owners = rig.db.store.page_owners().await.map_err(|e| e.to_string())?;
        let owner = owners.iter().find(|o| o.page_id.as_str() == page).and_then(|o| o.owner);
        nodes
            .iter()
            .find(|n| Some(n.id) == owner && n.live)
            .map(|n| n.name.clone())
            .ok_or_else(|| format!("owners {owners:?}, nodes {nodes:?}"))
    })
    .await
}

fn urls(nodes: &HashMap<String, Server>) -> Vec<String> {
    nodes.values().map(|n| n.url("").trim_end_matches('/').to_owned()).collect()
}

/// Every event of `0..n` answered exactly once, none pending, and Meta's limits kept.
async fn assert_answered_once(rig: &Rig, n: usize) {
    let replies = rig.wait_until_answered(n).await;
    let twice: Vec<usize> = (0..n).filter(|i| replies[i].len() > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    let counts = rig.db.store.inbox_counts().await.unwrap();
    assert_eq!(counts, vec![("done".to_owned(), n as i64)]);
    let state: serde_json::Value =
        rig.http.get(rig.meta.url() + "/_sim/state").send().await.unwrap().json().await.unwrap();
    assert_eq!(state["counters"]["violations_total"], 0, "per-Page rate kept across nodes: {state}");
    assert_eq!(state["counters"]["conversation_violations"], 0, "Conversations API pace kept: {state}");
}

fn unix_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_share_the_pages_and_a_killed_owner_fails_over_within_the_lease() {
    const N: usize = 900;
    let rig = rig().await;
    let mut nodes: HashMap<String, Server> = ["n1", "n2", "n3"].map(|n| (n.to_owned(), node(&rig, n))).into();
    let owner_a = owner_of(&rig, PAGE_A).await;
    owner_of(&rig, PAGE_B).await;
    let all = urls(&nodes);

    // Meta delivers for 6 s to any node; the owner of page A is killed once replies flow.
    let load = {
        let (http, all) = (rig.http.clone(), all.clone());
        tokio::spawn(async move { deliver_to(&http, &all, 0..N, 150.0, PAGES).await })
    };
    eventually_within(SETTLE, "replies flowing", || async {
        let sent = rig.meta.sim().messages_sent();
        if sent >= 150 { Ok(()) } else { Err(format!("{sent} sent")) }
    })
    .await;
    nodes.remove(&owner_a).unwrap().kill9();
    let killed_us = unix_us();
    let deliveries: Vec<Delivery> = load.await.unwrap();
    redeliver_to(&rig.http, &urls(&nodes), &deliveries, PAGES).await;
    assert_answered_once(&rig, N).await;

    // Another node claims the page within the lease and one claim tick, and answers for it.
    let claimed_us: i64 = rig
        .db
        .scalar(&format!(
            "SELECT (EXTRACT(EPOCH FROM claimed_at) * 1000000)::bigint::text FROM page_owners WHERE page_id = '{PAGE_A}'"
        ))
        .await
        .unwrap()
        .parse()
        .unwrap();
    let claimed = Duration::from_micros((claimed_us - killed_us).max(0) as u64);
    assert!(claimed <= TTL + TTL / 4 + Duration::from_secs(1), "claimed {claimed:?} after the kill");
    let first_after = rig
        .meta
        .sim()
        .messages()
        .into_iter()
        .filter(|m| m.page_id == PAGE_A && m.at_us > killed_us)
        .map(|m| m.at_us)
        .min()
        .expect("page A answered after the kill");
    let answered = Duration::from_micros((first_after - killed_us) as u64);
    let new_owner = owner_of(&rig, PAGE_A).await;
    assert_ne!(new_owner, owner_a);
    eprintln!(
        "kill -9 of {owner_a}, the owner of page A: {new_owner} claimed it {claimed:?} later, answered {answered:?} later"
    );

    // `cluster status` sees it: two live nodes, the killed one gone, both pages owned by live nodes.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["cluster", "status", "--json"])
        .env_clear()
        .env("DATABASE_URL", &rig.db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let live: Vec<&str> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["live"] == true)
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(live.len(), 2, "{status}");
    assert!(!live.contains(&owner_a.as_str()), "{status}");
    assert!(status["pages"].as_array().unwrap().iter().all(|p| p["owner_live"] == true), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_paused_past_its_lease_decides_no_send_for_the_pages_it_lost() {
    const N: usize = 60;
    // (A reply is marked as about to be sent a few at a time, as it is recorded or ahead of its send, so only
    // those the paused node marked are of unknown outcome for the new owner.)
    let rig = rig().await;
    let nodes: HashMap<String, Server> = ["n1", "n2", "n3"].map(|n| (n.to_owned(), node(&rig, n))).into();
    let owner = owner_of(&rig, PAGE_A).await;
    owner_of(&rig, PAGE_B).await;
    // Meta answers slowly, so the owner holds replies in flight and queued when it is paused.
    rig.meta.sim().set_faults(meta_sim::Faults { latency_ms: 400, ..meta_sim::Faults::default() });
    let paused = &nodes[&owner];
    let to_owner = [paused.url("").trim_end_matches('/').to_owned()];
    let page_a_events: Vec<usize> = (0..2 * N).step_by(2).collect();
    let deliveries = deliver_to(&rig.http, &to_owner, page_a_events.iter().copied(), 500.0, PAGES).await;
    assert!(deliveries.iter().all(|d| d.status == Some(200)));
    paused.signal("STOP");
    let stopped = Instant::now();

    // The others take page A once the paused node's lease has run out, and answer what it held.
    let taker = eventually_within(SETTLE, "page A taken over", || async {
        let now = owner_of(&rig, PAGE_A).await;
        if now != owner { Ok(now) } else { Err(format!("still {owner}")) }
    })
    .await;
    // Its last renewal was at most a quarter TTL before the pause.
    assert!(stopped.elapsed() >= TTL * 3 / 4, "taken over only once the lease ran out");
    rig.meta.sim().set_faults(meta_sim::Faults::default());
    let replies = eventually_within(SETTLE, "page A's events answered by the new owner", || async {
        let replies = rig.replies();
        let answered = page_a_events.iter().filter(|i| replies.contains_key(i)).count();
        if answered == N { Ok(replies) } else { Err(format!("{answered} of {N}")) }
    })
    .await;
    let twice: Vec<&usize> = page_a_events.iter().filter(|i| replies[*i].len() > 1).collect();
    assert!(twice.is_empty(), "the new owner answered these twice: {twice:?}");

    // Resumed, the old owner finds its lease gone and decides no send for page A any more. What it cannot take
    // back is a call it had begun (gated, not yet written to its socket) when it was paused: the Send API has
    // no idempotency key, so that call goes out as the process resumes (README, "What it cannot guarantee"),
    // at most `engine.max_in_flight_per_page` (4) of them. Any more would be sends decided without the lease.
    let resumed_us = unix_us();
    paused.signal("CONT");
    eventually_within(SETTLE, "the resumed node noticed it lost its lease", || async {
        let lines = paused.logged("lost the cluster lease");
        if lines.is_empty() { Err("not yet".to_owned()) } else { Ok(()) }
    })
    .await;
    let quiet = rig.meta.sim().until_quiet(Duration::from_millis(1500), SETTLE).await;
    assert!(quiet.is_ok());
    let replies = rig.replies();
    let late: Vec<(usize, i64)> = page_a_events
        .iter()
        .flat_map(|i| replies[i].iter().filter(|m| m.at_us >= resumed_us).map(move |m| (*i, m.at_us - resumed_us)))
        .collect();
    if std::env::var("DEBUG_CLUSTER").is_ok() {
        for (name, node) in &nodes {
            for line in node.logged("") {
                eprintln!("{}: {line}", if *name == owner { "PAUSED" } else { name.as_str() });
            }
        }
    }
    // A begun call goes out as soon as the process runs again; a send decided later would come later.
    assert!(
        late.len() <= 4 && late.iter().all(|(_, after)| *after < 1_000_000),
        "more than the calls it had begun went out after the resume: {late:?} (event, µs after it)"
    );
    eprintln!("SIGSTOP test: {} call(s) the paused node had begun went out as it resumed", late.len());
    eprintln!("SIGSTOP of {owner} for {:?}: {taker} took page A and answered its {N} events once", stopped.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_under_load_loses_nothing_and_sends_nothing_twice() {
    const N: usize = 1200;
    let rig = rig().await;
    let names = ["n1", "n2", "n3"];
    let mut nodes: HashMap<String, Server> = names.map(|n| (n.to_owned(), node(&rig, n))).into();
    owner_of(&rig, PAGE_A).await;
    owner_of(&rig, PAGE_B).await;

    // Meta delivers for 8 s while every node is stopped (SIGTERM) and started again in turn, each time to the
    // nodes that are up.
    let mut deliveries = Vec::new();
    let started = Instant::now();
    let mut next = 0;
    let mut logs = Vec::new();
    for name in names {
        let chunk = next..(next + N / names.len()).min(N);
        next = chunk.end;
        let load = {
            let (http, up) = (rig.http.clone(), urls(&nodes));
            tokio::spawn(async move { deliver_to(&http, &up, chunk, 150.0, PAGES).await })
        };
        tokio::time::sleep(Duration::from_millis(700)).await;
        let stopping = nodes.remove(name).unwrap();
        let handed_over = Instant::now();
        logs.extend(stopping.stop_cleanly().into_iter().map(|line| format!("{name} (stopped): {line}")));
        let stop_took = handed_over.elapsed();
        nodes.insert(name.to_owned(), node(&rig, name));
        deliveries.extend(load.await.unwrap());
        eprintln!("rolling restart: {name} stopped in {stop_took:?} and started again");
    }
    redeliver_to(&rig.http, &urls(&nodes), &deliveries, PAGES).await;
    assert_answered_once(&rig, N).await;
    let refused = deliveries.iter().filter(|d| d.status.is_none()).count();
    let errors = deliveries.iter().filter(|d| d.status.is_some_and(|s| s != 200)).count();
    eprintln!(
        "rolling restart of 3 nodes in {:?}: of {N} deliveries, {refused} found the node gone (redelivered), \
         {errors} got an error status",
        started.elapsed()
    );
    if errors > 0 {
        for d in deliveries.iter().filter(|d| d.status.is_some_and(|s| s != 200)) {
            eprintln!("event {} got {:?} at {:?}", d.event, d.status, d.started - started);
        }
        for (name, node) in &nodes {
            logs.extend(node.logged("").into_iter().map(|line| format!("{name}: {line}")));
        }
        for line in logs.iter().filter(|l| l.contains("WARN") || l.contains("ERROR")) {
            eprintln!("{line}");
        }
    }
    assert_eq!(errors, 0, "a node that is stopping answers what it takes, or refuses the connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_connected_elsewhere_is_answered_whichever_node_its_first_webhook_reaches() {
    let rig = rig().await;
    let page_b = switchboard::domain::PageId::parse(PAGE_B).unwrap();
    let rural_king = rig.db.store.integration_by_page(&page_b).await.unwrap().unwrap().client_id;
    rig.db
        .store
        .revoke_integration(&page_b, "not yet", switchboard::store::RevokeIf::OwnedBy(rural_king))
        .await
        .unwrap();
    let nodes: HashMap<String, Server> = ["n1", "n2"].map(|n| (n.to_owned(), node(&rig, n))).into();
    owner_of(&rig, PAGE_A).await;

    // Page B is connected again by another process, which tells nobody (no NOTIFY, no reconcile yet): the
    // nodes' own directories do not know it.
    let tokens = crate::app::sim_page_tokens(&rig.meta).await;
    let client = rig.db.store.client_by_id(rural_king).await.unwrap().unwrap();
    let keys = crate::support::ring(&rig.key_entry);
    crate::app::connect(&rig.db.store, &keys, &client, PAGE_B, None, &tokens[PAGE_B]).await;

    // Its first webhooks reach both nodes at once: each looks the page up in the database rather than drop them.
    let senders = ["7300000001", "7300000002"];
    for (node, sender) in nodes.values().zip(senders) {
        let body = crate::app::text_event(PAGE_B, sender, &format!("m_{sender}"), "hello", 1_700_000_000_000);
        assert_eq!(rig.deliver(node, body).await, 200);
    }
    eventually_within(Duration::from_secs(20), "page B's first events answered", || async {
        let answered: Vec<String> = rig.meta.sim().messages().into_iter().map(|m| m.recipient_id).collect();
        let missing: Vec<&&str> = senders.iter().filter(|s| !answered.iter().any(|a| a == **s)).collect();
        if missing.is_empty() { Ok(()) } else { Err(format!("unanswered: {missing:?}")) }
    })
    .await;
    // The owner keeps the page's figures where every node's portal reads them.
    eventually_within(Duration::from_secs(10), "page B's figures shared", || async {
        let figures = rig.db.store.figures().await.map_err(|e| e.to_string())?;
        match figures.iter().find(|f| f.page_id == PAGE_B) {
            Some(f) if f.events >= 2 && f.replies >= 2 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_limits_are_counted_across_nodes_and_survive_a_restart() {
    let rig = rig().await;
    let hash = switchboard::secrets::password::hash(secrecy::SecretString::from(crate::portal::PASSWORD.to_owned()))
        .await
        .unwrap();
    rig.db
        .store
        .create_user(&switchboard::store::NewUser {
            email: switchboard::domain::Email::parse("ops@switchboard.example").unwrap(),
            password_hash: hash,
            role: switchboard::domain::Role::Operator,
            client_id: None,
            must_change_password: false,
        })
        .await
        .unwrap();
    let mut nodes: HashMap<String, Server> = ["n1", "n2"].map(|n| (n.to_owned(), node(&rig, n))).into();
    let attempt = |node: &Server| {
        let url = node.url("/portal/login");
        async move {
            let b = crate::portal::browser();
            let page = b.get(&url).send().await.unwrap().text().await.unwrap();
            let csrf = crate::portal::field(&page, "csrf");
            let form = [("csrf", csrf.as_str()), ("email", "ops@switchboard.example"), ("password", "a wrong guess!")];
            b.post(&url).form(&form).send().await.unwrap().status().as_u16()
        }
    };
    // Five wrong guesses at the account on one node: the sixth, on the other node, is slowed.
    for _ in 0..5 {
        assert_eq!(attempt(&nodes["n1"]).await, 401);
    }
    assert_eq!(attempt(&nodes["n2"]).await, 429, "the nodes count together");
    // A restart forgets nothing.
    nodes.remove("n2").unwrap().stop_cleanly();
    nodes.insert("n2".to_owned(), node(&rig, "n2"));
    assert_eq!(attempt(&nodes["n2"]).await, 429, "still slowed after a restart");
}

/// The Pages of the black-box scenario: the stand-in's two, and two more of the same person.
const FOUR_PAGES: [&str; 4] = [PAGE_A, PAGE_B, "318933334455667", "427044445566778"];

/// The black box: a fresh three-node cluster, four Pages connected through Facebook Login on one node a
/// moment after the nodes started (so a node may claim a Page before its directory has heard of it), then
/// 1,500 signed webhooks to random nodes: every one is answered, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_connected_through_facebook_login_as_the_cluster_starts_are_all_answered() {
    const N: usize = 1500;
    let defaults = SimConfig::default();
    let mut user = defaults.users[0].clone();
    for (i, id) in FOUR_PAGES[2..].iter().enumerate() {
        let template = user.pages[1].clone();
        user.pages.push(meta_sim::SimPage { id: (*id).to_owned(), name: format!("Store {}", i + 3), ..template });
    }
    let sim = SimConfig { rate_limit_per_page: META_RATE, users: vec![user], ..defaults };
    let rig = Rig::bare(TestDb::postgres().await, sim).await;
    crate::support::client(&rig.db.store, "woodstock-outlet").await;
    let public = crate::app::REDIRECT.trim_end_matches("/api/auth/facebook/callback");
    let nodes: HashMap<String, Server> = ["n1", "n2", "n3"]
        .map(|n| {
            let node = rig.serve_with(&[
                ("SWITCHBOARD_CLUSTER_MODE", "postgres"),
                ("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", "2"),
                ("SWITCHBOARD__CLUSTER__NODE_NAME", n),
                ("SWITCHBOARD_PUBLIC_URL", public),
            ]);
            (n.to_owned(), node)
        })
        .into();

    // The client opens its link on n1 and shares all four Pages; Facebook sends it back to n1.
    let n1 = nodes["n1"].url("").trim_end_matches('/').to_owned();
    let links = switchboard::onboarding::OnboardLinks::new(&secrecy::SecretString::from(crate::app::SECRET.to_owned()));
    let slug = switchboard::domain::ClientSlug::parse("woodstock-outlet").unwrap();
    let link =
        format!("{n1}/api/auth/facebook/start?{}", links.sign(&slug, switchboard::clock::now().timestamp() + 600));
    let browser = crate::portal::browser();
    let dialog = crate::support::login::begin(&browser, &link).await.unwrap();
    let callback = crate::support::login::decide(&browser, &dialog, &FOUR_PAGES, None, "continue").await.unwrap();
    let resp = browser.get(callback.replace(public, &n1)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 302);
    let result = resp.headers()["location"].to_str().unwrap().to_owned();
    let page = browser.get(format!("{n1}{result}")).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Your Facebook connection is set up"), "{page}");

    let all = urls(&nodes);
    let deliveries = deliver_to(&rig.http, &all, 0..N, 300.0, &FOUR_PAGES).await;
    redeliver_to(&rig.http, &all, &deliveries, &FOUR_PAGES).await;
    assert_answered_once(&rig, N).await;
    for page in FOUR_PAGES {
        owner_of(&rig, page).await;
    }
}
