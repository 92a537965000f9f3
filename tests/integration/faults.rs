//! Fault tests, loopback only and bounded: the real `switchboard` binary killed with SIGKILL under load and
//! started again; PostgreSQL stopped under load and started again. Meta's side is played by the stand-in
//! (Send API) and by the test (signed webhooks, and Meta's retry of anything that did not get a 200).
//!
//! Every event has its own sender, so the replies the stand-in accepted can be counted per event.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::app::{PAGE_A, PAGE_B, SECRET, text_event};
use crate::rig::{Rig, SETTLE};
use crate::support::{PrivatePg, TestDb};

pub(crate) fn sender(i: usize) -> String {
    format!("7{i:07}")
}

/// The seeded Pages, which the deliveries alternate between unless told others.
pub(crate) const PAGES: &[&str] = &[PAGE_A, PAGE_B];

/// Event `i`: a customer of its own writing to one of `pages`, in turn.
fn body(i: usize, pages: &[&str]) -> Vec<u8> {
    let page = pages[i % pages.len()];
    text_event(page, &sender(i), &format!("m_fault_{i}"), &format!("hello {i}"), 1_700_000_000_000 + i as i64)
}

/// One webhook delivery as Meta saw it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    pub event: usize,
    /// The HTTP status, or `None` when no answer came (connection refused or cut).
    pub status: Option<u16>,
    pub started: Instant,
    pub ended: Instant,
}

/// Delivers `events` to `url`, `rate` per second, at most 256 at a time (Meta delivers in parallel).
async fn deliver(
    http: &reqwest::Client,
    url: &str,
    events: impl IntoIterator<Item = usize>,
    rate: f64,
) -> Vec<Delivery> {
    deliver_to(http, &[url.to_owned()], events, rate, PAGES).await
}

/// Delivers `events` (to `pages` in turn), each to one of `urls` at random (a load balancer), `rate` per second,
/// at most 256 at a time (Meta delivers in parallel).
pub(crate) async fn deliver_to(
    http: &reqwest::Client,
    urls: &[String],
    events: impl IntoIterator<Item = usize>,
    rate: f64,
    pages: &[&str],
) -> Vec<Delivery> {
    use rand::Rng as _;
    let permits = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    for (k, event) in events.into_iter().enumerate() {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let permit = permits.clone().acquire_owned().await.unwrap();
        let body = body(event, pages);
        let url = &urls[rand::rng().random_range(0..urls.len())];
        let request = http
            .post(format!("{url}/api/facebook-webhook"))
            .header("x-hub-signature-256", meta_sim::webhook::signature(SECRET, &body))
            .body(body);
        tasks.spawn(async move {
            let started = Instant::now();
            let status = request.send().await.ok().map(|r| r.status().as_u16());
            drop(permit);
            Delivery { event, status, started, ended: Instant::now() }
        });
    }
    let mut all = tasks.join_all().await;
    all.sort_by_key(|d| d.started);
    all
}

/// Meta's retry: delivers every event that did not get a 200 again, until each has one.
async fn redeliver_until_accepted(http: &reqwest::Client, url: &str, deliveries: &[Delivery]) {
    redeliver_to(http, &[url.to_owned()], deliveries, PAGES).await;
}

/// Meta's retry, to any of `urls`.
pub(crate) async fn redeliver_to(http: &reqwest::Client, urls: &[String], deliveries: &[Delivery], pages: &[&str]) {
    let accepted: HashSet<usize> = deliveries.iter().filter(|d| d.status == Some(200)).map(|d| d.event).collect();
    let mut missing: Vec<usize> = deliveries.iter().map(|d| d.event).filter(|e| !accepted.contains(e)).collect();
    missing.sort_unstable();
    missing.dedup();
    for _ in 0..20 {
        if missing.is_empty() {
            return;
        }
        let round = deliver_to(http, urls, missing.clone(), 500.0, pages).await;
        missing = round.iter().filter(|d| d.status != Some(200)).map(|d| d.event).collect();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("events never accepted: {missing:?}");
}

/// Meta's message ids the outbox stored.
pub(crate) async fn stored_message_ids(db: &TestDb) -> HashSet<String> {
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&db.url).await.unwrap();
    let rows: Vec<(String,)> = sqlx::query_as("SELECT message_id FROM webhook_replies WHERE message_id IS NOT NULL")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    rows.into_iter().map(|(m,)| m).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_then_restart_answers_every_accepted_event_once() {
    const N: usize = 1200;
    let rig = Rig::new(TestDb::postgres().await).await;
    let first = rig.serve();
    let url = first.url("");
    let url = url.trim_end_matches('/').to_owned();

    // Meta delivers for about 4 s; the process is killed once replies are flowing, mid-delivery.
    let load = {
        let (http, url) = (rig.http.clone(), url.clone());
        tokio::spawn(async move { deliver(&http, &url, 0..N, 300.0).await })
    };
    let started = Instant::now();
    while rig.meta.sim().messages_sent() < 150 {
        assert!(started.elapsed() < SETTLE, "no replies before the kill");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    first.kill9();
    let killed_at = Instant::now();
    let deliveries = load.await.unwrap();
    let accepted_before: Vec<&Delivery> =
        deliveries.iter().filter(|d| d.status == Some(200) && d.ended <= killed_at).collect();
    assert!(accepted_before.len() >= 100, "the kill came under load: {} accepted", accepted_before.len());
    assert!(deliveries.iter().any(|d| d.status.is_none()), "some deliveries failed while the process was dead");

    // What the dead process left: the replies Meta accepted from it, and which of their message_ids reached
    // the database. A reply Meta accepted whose id was not stored is "unconfirmed"; only those may be sent
    // again. (Waits for the stand-in to finish any request that was on the wire at the kill.)
    let at_kill = rig.settled_replies().await;
    let stored_at_kill = stored_message_ids(&rig.db).await;
    let replies_at_kill = at_kill.values().map(Vec::len).sum::<usize>();
    let unconfirmed: HashSet<usize> = at_kill
        .iter()
        .filter(|(_, sent)| sent.iter().any(|m| !stored_at_kill.contains(&m.message_id)))
        .map(|(&i, _)| i)
        .collect();

    // Started again on the same database; Meta retries what got no 200.
    let second = rig.serve();
    let url = second.url("");
    redeliver_until_accepted(&rig.http, url.trim_end_matches('/'), &deliveries).await;
    let replies = rig.wait_until_answered(N).await;

    // Every event got exactly one reply. The replies Meta accepted whose message_id had not reached the
    // database when the process died were settled by reading the conversation back, not sent again.
    let stored = stored_message_ids(&rig.db).await;
    let twice: Vec<usize> = (0..N).filter(|i| replies[i].len() > 1).collect();
    for i in 0..N {
        assert!(!replies[&i].is_empty(), "event {i} unanswered");
    }
    let why: Vec<String> = twice
        .iter()
        .map(|i| {
            let sent: Vec<String> = replies[i].iter().map(|m| format!("{} at {} ms", m.message_id, m.at_ms)).collect();
            let before = at_kill.get(i).map_or(0, Vec::len);
            format!("event {i}: {sent:?}, {before} sent before the kill, unconfirmed: {}", unconfirmed.contains(i))
        })
        .collect();
    assert!(twice.is_empty(), "answered more than once: {why:?}");
    let unsettled: Vec<usize> =
        unconfirmed.iter().copied().filter(|i| !stored.contains(&replies[i][0].message_id)).collect();
    assert!(unsettled.is_empty(), "the delivered replies found in the conversation are stored as sent: {unsettled:?}");
    let counts = rig.db.store.inbox_counts().await.unwrap();
    assert_eq!(counts, vec![("done".to_owned(), N as i64)]);
    let state: serde_json::Value =
        rig.http.get(rig.meta.url() + "/_sim/state").send().await.unwrap().json().await.unwrap();
    assert_eq!(state["counters"]["conversation_violations"], 0, "the Conversations API pace was kept: {state}");
    eprintln!(
        "kill -9: {} events accepted before the kill, {replies_at_kill} replies sent by then, {} of them \
         unconfirmed and settled through the Conversations API ({} calls), none sent twice",
        accepted_before.len(),
        unconfirmed.len(),
        state["counters"]["conversation_calls"]
    );
    second.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_under_load_gives_only_503s_then_recovers_with_no_duplicates() {
    const RATE: f64 = 200.0;
    let pg = Arc::new(PrivatePg::start());
    let rig = Rig::new(TestDb::postgres_on(&pg.url()).await).await;
    let server = rig.serve();
    let url = server.url("");
    let url = url.trim_end_matches('/').to_owned();

    // 1 s up, 4 s down, 3 s up again, with Meta delivering throughout.
    let n = (RATE * 8.5) as usize;
    let load = {
        let (http, url) = (rig.http.clone(), url.clone());
        tokio::spawn(async move { deliver(&http, &url, 0..n, RATE).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (down, up) = {
        let pg = pg.clone();
        tokio::task::spawn_blocking(move || {
            pg.stop();
            let down = Instant::now();
            std::thread::sleep(Duration::from_secs(4));
            let up = Instant::now();
            pg.start_again();
            (down, up)
        })
        .await
        .unwrap()
    };
    let restarted = Instant::now();
    let deliveries = load.await.unwrap();

    // Every delivery made and answered while PostgreSQL was down gets a 5xx (a 200 would be an event
    // acknowledged without a commit). One that started earlier may have committed before the stop; one that
    // ends after the start again may have committed then.
    let while_down: Vec<&Delivery> = deliveries.iter().filter(|d| d.started > down && d.ended < up).collect();
    assert!(while_down.len() >= 50, "answers while PostgreSQL was down: {}", while_down.len());
    let not_5xx: Vec<_> = while_down.iter().filter(|d| d.status.is_none_or(|s| s < 500)).collect();
    assert!(not_5xx.is_empty(), "only 5xx while PostgreSQL is down, got {:?}", &not_5xx[..not_5xx.len().min(5)]);
    let late: Vec<&Delivery> =
        deliveries.iter().filter(|d| d.started > restarted + Duration::from_millis(1500)).collect();
    assert!(!late.is_empty() && late.iter().all(|d| d.status == Some(200)), "accepting again once PostgreSQL is back");
    assert!(deliveries.iter().all(|d| d.status.is_some()), "the server itself stayed up");

    redeliver_until_accepted(&rig.http, &url, &deliveries).await;
    let replies = rig.wait_until_answered(n).await;
    let twice: Vec<usize> = (0..n).filter(|i| replies[i].len() > 1).collect();
    assert!(twice.is_empty(), "answered more than once: {twice:?}");
    let counts = rig.db.store.inbox_counts().await.unwrap();
    assert_eq!(counts, vec![("done".to_owned(), n as i64)]);
    eprintln!(
        "PostgreSQL outage: {} deliveries while down, all 5xx; {} events, each answered once",
        while_down.len(),
        n
    );
    server.terminate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_shutdown_stores_the_answers_to_sends_in_flight() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = rig.serve();
    let url = server.url("");
    // Meta answers slowly: the reply is still in flight when the server is told to stop.
    rig.meta.sim().set_faults(meta_sim::Faults { latency_ms: 1500, ..meta_sim::Faults::default() });
    let deliveries = deliver(&rig.http, url.trim_end_matches('/'), [0], 10.0).await;
    assert_eq!(deliveries[0].status, Some(200));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rig.meta.sim().messages_sent(), 0, "the send is in flight");
    server.stop_cleanly();

    let sent = rig.meta.sim().messages();
    assert_eq!(sent.len(), 1, "Meta accepted the reply while the server was stopping");
    assert!(
        stored_message_ids(&rig.db).await.contains(&sent[0].message_id),
        "its message_id was stored before the server stopped, so a restart will not send it again"
    );
    // The event itself was still open when the engine stopped; the next start finishes it without sending
    // the reply again.
    rig.meta.sim().set_faults(meta_sim::Faults::default());
    let again = rig.serve();
    rig.wait_until_answered(1).await;
    assert_eq!(rig.db.store.inbox_counts().await.unwrap(), vec![("done".to_owned(), 1)]);
    assert_eq!(rig.meta.sim().messages().len(), 1, "not sent again");
    again.terminate();
}
