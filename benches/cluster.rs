//! Cluster benchmark: durable ingest with a bot and a reply for every event, one process in single mode
//! against a cluster of 1, 2 and 3 nodes on the same PostgreSQL server (each row on a fresh database), then
//! the failover time over repeated kills.
//!
//! Every node runs on one core's worth of runtime in this process (the load generator on another), each
//! webhook goes to one of the nodes at random, and the 50 Pages spread over the nodes. On a 2-core machine
//! the nodes share the cores with each other and with PostgreSQL: more nodes cannot mean more throughput
//! here; the rows show what the cluster costs and that it stays correct, not how it scales on more cores.
//!
//! Rows: acknowledgements per second (webhooks answered 200), answers per second (replies the stand-in
//! accepted, until the last one), and webhook → reply latency at a fixed rate (p50, p99). Then failover: three
//! `switchboard serve` processes (lease 2 s), the owner of one Page killed with SIGKILL FAILOVER_KILLS times
//! (default 5) while that Page receives 50 events a second: kill → claim by another node, kill → its first
//! reply; min, median, max.
//!
//! `cargo bench --bench cluster` (CLUSTER_REQUESTS=N events per ingest row, default 4000; CLUSTER_RATE=R
//! events/s for the latency phase, default 500; FAILOVER_KILLS=K).

mod common;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    PAGES, SECRET, drop_database, generate, key_entry, now_us, page_id, scratch_database, seed, serve, settings,
};
use meta_sim::sender::{SendPlan, run};
use meta_sim::webhook::{Kind, text_message};
use switchboard::store::Store;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn plan(addr: std::net::SocketAddr, count: usize, rate: Option<f64>, concurrency: usize) -> SendPlan {
    SendPlan {
        target: format!("http://{addr}/api/facebook-webhook"),
        app_secret: SECRET.to_owned(),
        count,
        rate,
        concurrency,
        timeout: Duration::from_secs(30),
    }
}

/// Waits until every Page has a live owner (or there is no cluster).
async fn all_owned(store: &Store) {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(60) {
        let live: Vec<i64> = store.live_nodes().await.expect("nodes").into_iter().map(|(id, _)| id).collect();
        let owned = store
            .page_owners()
            .await
            .expect("owners")
            .iter()
            .filter(|o| o.owner.is_some_and(|n| live.contains(&n)))
            .count();
        if owned == PAGES {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the Pages were never all owned");
}

struct Row {
    name: String,
    acks_per_sec: f64,
    answers_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

/// One row: `nodes` servers (a cluster if `cluster`) on a fresh database.
fn row(
    load: &tokio::runtime::Runtime,
    sim: &meta_sim::SimHandle,
    tokens: &Arc<HashMap<String, String>>,
    nodes: usize,
    cluster: bool,
) -> Option<Row> {
    let db = load.block_on(scratch_database(&format!("cluster{nodes}{}", u8::from(cluster))))?;
    let key = key_entry();
    let graph = sim.url();
    let node_settings = |k: usize| {
        let extra = if cluster {
            format!("[cluster]\nmode = \"postgres\"\nnode_name = \"bench-{k}\"\n")
        } else {
            String::new()
        };
        settings(&db, &graph, &key, true, 1000, &extra)
    };
    load.block_on(seed(&node_settings(0), tokens));
    let addrs: Vec<std::net::SocketAddr> = (0..nodes).map(|k| serve(node_settings(k), None)).collect();
    let store = load.block_on(switchboard::store::connect(&db, 2)).expect("store");
    if cluster {
        load.block_on(all_owned(&store));
    }
    std::thread::sleep(Duration::from_millis(500));

    // Ingest: as fast as the nodes take it, 64 requests in flight in all.
    let n: usize = env_or("CLUSTER_REQUESTS", 4000);
    let bodies = generate("", Kind::Text, 11, n);
    let before = sim.sim().messages_sent();
    let started = Instant::now();
    let reports = load.block_on(async {
        let sends = addrs.iter().enumerate().map(|(k, addr)| {
            let mine: Vec<Vec<u8>> = bodies.iter().skip(k).step_by(nodes).cloned().collect();
            let plan = plan(*addr, mine.len(), None, 64 / nodes);
            async move {
                let mut it = mine.into_iter();
                run(&plan, || it.next().unwrap_or_default()).await
            }
        });
        futures_util::future::join_all(sends).await
    });
    let acked = started.elapsed();
    assert!(
        reports.iter().all(|r| r.acknowledged as usize == r.sent as usize),
        "every webhook acknowledged: {reports:?}"
    );
    let quiet = load.block_on(sim.sim().until_quiet(Duration::from_millis(500), Duration::from_secs(180)));
    let answered = sim.sim().messages_sent() - before;
    assert!(quiet.is_ok() && answered as usize >= n, "{answered} of {n} answered");
    let answered_in = started.elapsed().saturating_sub(Duration::from_millis(500));

    // Latency at a fixed rate: one event per webhook, each from its own sender.
    let rate: f64 = env_or("CLUSTER_RATE", 500.0);
    let count = (rate * 4.0) as usize;
    let tag = format!("{nodes}{}", u8::from(cluster));
    let sender = |i: usize| format!("6{tag}{i:07}");
    let mut sent_at = vec![0i64; count];
    load.block_on(async {
        let sends = addrs.iter().enumerate().map(|(k, addr)| {
            let mine: Vec<usize> = (k..count).step_by(nodes).collect();
            let plan = plan(*addr, mine.len(), Some(rate / nodes as f64), 256);
            let (sender, tag) = (&sender, &tag);
            async move {
                let mut times = Vec::with_capacity(mine.len());
                let mut it = mine.into_iter();
                run(&plan, || {
                    let i = it.next().unwrap_or_default();
                    times.push((i, now_us()));
                    text_message(
                        &page_id(i % PAGES),
                        &sender(i),
                        &format!("m_l{tag}_{i}"),
                        "hi",
                        1_700_000_000_000 + i as i64,
                    )
                })
                .await;
                times
            }
        });
        for times in futures_util::future::join_all(sends).await {
            for (i, at) in times {
                sent_at[i] = at;
            }
        }
    });
    let _ = load.block_on(sim.sim().until_quiet(Duration::from_millis(500), Duration::from_secs(120)));
    let replied: HashMap<String, i64> = sim.sim().messages().into_iter().map(|m| (m.recipient_id, m.at_us)).collect();
    let mut e2e: Vec<i64> = (0..count).filter_map(|i| replied.get(&sender(i)).map(|at| at - sent_at[i])).collect();
    e2e.sort_unstable();
    let pick = |q: f64| {
        Duration::from_micros(
            e2e.get(((e2e.len() as f64 * q) as usize).min(e2e.len().saturating_sub(1))).copied().unwrap_or(0).max(0)
                as u64,
        )
    };
    load.block_on(async {
        store.close().await;
        drop_database(&db).await;
    });
    Some(Row {
        name: if cluster {
            format!("cluster, {nodes} node{}", if nodes > 1 { "s" } else { "" })
        } else {
            "single mode".to_owned()
        },
        acks_per_sec: n as f64 / acked.as_secs_f64(),
        answers_per_sec: n as f64 / answered_in.as_secs_f64(),
        p50: pick(0.5),
        p99: pick(0.99),
    })
}

/// `switchboard serve` in cluster mode, and the address it logged.
struct Node {
    child: Child,
    addr: String,
}

fn start_node(db: &str, key: &str, graph: &str, name: &str) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("serve")
        .env_clear()
        .envs([
            ("DATABASE_URL", db),
            ("SWITCHBOARD_ENCRYPTION_KEYS", key),
            ("META_APP_ID", "1234567890"),
            ("META_APP_SECRET", SECRET),
            ("META_VERIFY_TOKEN", "vt"),
            ("META_GRAPH_URL", graph),
            ("SWITCHBOARD_BIND", "127.0.0.1:0"),
            ("SWITCHBOARD_METRICS_BIND", "127.0.0.1:0"),
            ("SWITCHBOARD_CLUSTER_MODE", "postgres"),
            ("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", "2"),
            ("SWITCHBOARD__CLUSTER__NODE_NAME", name),
            ("SWITCHBOARD__ENGINE__SEND_RATE_PER_PAGE", "1000"),
            ("SWITCHBOARD_LOG", "info"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("switchboard serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.split(" addr=")
                .nth(1)
                .filter(|_| l.contains("listening"))
                .map(|a| a.split_whitespace().next().unwrap_or_default().to_owned())
        })
        .expect("the node logs its address");
    std::thread::spawn(move || lines.for_each(drop));
    Node { child, addr }
}

/// Kills the owner of one Page again and again while that Page receives events: kill → claim, kill → reply.
fn failover(
    load: &tokio::runtime::Runtime,
    sim: &meta_sim::SimHandle,
    tokens: &Arc<HashMap<String, String>>,
) -> Option<Vec<(Duration, Duration)>> {
    let db = load.block_on(scratch_database("failover"))?;
    let key = key_entry();
    let graph = sim.url();
    load.block_on(seed(&settings(&db, &graph, &key, true, 1000, ""), tokens));
    let store = load.block_on(switchboard::store::connect(&db, 2)).expect("store");
    let names = ["f1", "f2", "f3"];
    let mut nodes: HashMap<&str, Node> = names.iter().map(|n| (*n, start_node(&db, &key, &graph, n))).collect();
    load.block_on(all_owned(&store));
    let page = page_id(0);
    let kills: usize = env_or("FAILOVER_KILLS", 5);
    let mut results = Vec::new();
    let http = reqwest::Client::new();
    for kill in 0..kills {
        let (owner_id, owner) = load.block_on(async {
            let nodes = store.live_nodes().await.expect("nodes");
            let owner = store
                .page_owners()
                .await
                .expect("owners")
                .into_iter()
                .find(|o| o.page_id.as_str() == page)
                .and_then(|o| o.owner);
            nodes.into_iter().find(|(id, _)| Some(*id) == owner).expect("an owner")
        });
        let owner: &str = names.iter().find(|n| **n == owner).expect("a known node");
        let survivors: Vec<String> =
            nodes.iter().filter(|(n, _)| **n != owner).map(|(_, node)| node.addr.clone()).collect();
        // The Page's events keep coming (50 a second, to the surviving nodes).
        let trickle = {
            let (http, page, survivors) = (http.clone(), page.clone(), survivors.clone());
            load.spawn(async move {
                for i in 0..400usize {
                    let body = text_message(
                        &page,
                        &format!("5{kill}{i:06}"),
                        &format!("m_f{kill}_{i}"),
                        "hi",
                        1_700_000_000_000 + i as i64,
                    );
                    let _ = http
                        .post(format!("http://{}/api/facebook-webhook", survivors[i % survivors.len()]))
                        .header("x-hub-signature-256", meta_sim::webhook::signature(SECRET, &body))
                        .body(body)
                        .send()
                        .await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        };
        std::thread::sleep(Duration::from_millis(500));
        let mut killed = nodes.remove(owner).expect("owner node");
        killed.child.kill().expect("kill");
        let killed_us = now_us();
        let _ = killed.child.wait();
        let (claimed, answered) = load.block_on(async {
            let started = Instant::now();
            loop {
                let claimed_by_other = {
                    let live: Vec<i64> =
                        store.live_nodes().await.expect("nodes").into_iter().map(|(id, _)| id).collect();
                    store.page_owners().await.expect("owners").into_iter().any(|o| {
                        o.page_id.as_str() == page && o.owner.is_some_and(|n| n != owner_id && live.contains(&n))
                    })
                };
                // The first reply the new owner sent (not one the killed node had on the wire).
                let claimed = if claimed_by_other { Some(sqlx_claimed_at(&db, &page).await) } else { None };
                let reply = claimed.and_then(|claimed| {
                    let sent = sim.sim().messages().into_iter().filter(|m| m.page_id == page && m.at_us > claimed);
                    sent.map(|m| m.at_us).min().map(|at| (claimed, at))
                });
                if let Some((claimed, at)) = reply {
                    return (
                        Duration::from_micros((claimed - killed_us).max(0) as u64),
                        Duration::from_micros((at - killed_us).max(0) as u64),
                    );
                }
                if started.elapsed() > Duration::from_secs(30) {
                    let owners = store.page_owners().await.expect("owners");
                    let nodes = store.cluster_nodes().await.expect("nodes");
                    panic!(
                        "page never answered after the kill: owners {:?}, nodes {nodes:?}",
                        owners.iter().find(|o| o.page_id.as_str() == page)
                    );
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        println!("kill {}: {owner} killed; claimed after {claimed:.2?}, answered after {answered:.2?}", kill + 1);
        results.push((claimed, answered));
        trickle.abort();
        nodes.insert(owner, start_node(&db, &key, &graph, owner));
        load.block_on(all_owned(&store));
        std::thread::sleep(Duration::from_secs(1));
    }
    for (_, mut node) in nodes {
        let _ = node.child.kill();
        let _ = node.child.wait();
    }
    load.block_on(async {
        store.close().await;
        drop_database(&db).await;
    });
    Some(results)
}

/// When `page` was last claimed, in unix microseconds.
async fn sqlx_claimed_at(db: &str, page: &str) -> i64 {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(db).await.expect("connect");
    let (at,): (i64,) =
        sqlx::query_as("SELECT (EXTRACT(EPOCH FROM claimed_at) * 1000000)::bigint FROM page_owners WHERE page_id = $1")
            .bind(page)
            .fetch_one(&mut conn)
            .await
            .expect("claimed_at");
    at
}

fn main() {
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let (sim, tokens) = common::stand_in(&load, 10_000_000);
    let mut rows = Vec::new();
    let rows_wanted = std::env::var("CLUSTER_ONLY").map_or(true, |only| only != "failover");
    for (nodes, cluster) in [(1, false), (1, true), (2, true), (3, true)].into_iter().filter(|_| rows_wanted) {
        if let Some(row) = row(&load, &sim, &tokens, nodes, cluster) {
            rows.push(row);
        }
    }
    if let Some(base) = rows.first().map(|r| r.answers_per_sec) {
        print_rows(&rows, base);
    }
    if let Some(results) = failover(&load, &sim, &tokens) {
        print_failover(&results);
    } else {
        println!("no PostgreSQL reachable: nothing measured");
    }
}

fn print_rows(rows: &[Row], base: f64) {
    println!(
        "\ndurable ingest with a bot and a reply per event, 50 pages, each node on one core ({} cores here)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:<18} {:>10} {:>12} {:>8} {:>12} {:>12}",
        "servers", "acks/s", "answers/s", "ratio", "e2e p50", "e2e p99"
    );
    for r in rows {
        println!(
            "{:<18} {:>10.0} {:>12.0} {:>7.0}% {:>12.2?} {:>12.2?}",
            r.name,
            r.acks_per_sec,
            r.answers_per_sec,
            100.0 * r.answers_per_sec / base,
            r.p50,
            r.p99
        );
    }
}

fn print_failover(results: &[(Duration, Duration)]) {
    {
        let mut claimed: Vec<Duration> = results.iter().map(|(c, _)| *c).collect();
        let mut answered: Vec<Duration> = results.iter().map(|(_, a)| *a).collect();
        claimed.sort();
        answered.sort();
        let spread =
            |v: &[Duration]| format!("min {:.2?}, median {:.2?}, max {:.2?}", v[0], v[v.len() / 2], v[v.len() - 1]);
        println!("\nfailover (lease 2 s, claim tick 0.5 s), {} kills of the owner of one Page:", results.len());
        println!("  kill → claim by another node: {}", spread(&claimed));
        println!("  kill → its first reply:       {}", spread(&answered));
    }
}
