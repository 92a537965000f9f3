//! Meta's side of the run: a steady stream of signed webhooks, one customer message each (every event from a
//! sender of its own, `7` and its number, so each reply names its event), each to a random node that is up.
//! A delivery that gets no 200 (a refused connection, a timeout, a 5xx) is made again a moment later to another
//! node, as Meta does, until it is acknowledged or the run ends.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::world::{PAGES, SECRET};
use crate::{Clock, unix_us};

/// One event the run delivered.
#[derive(Debug, Clone)]
pub struct Event {
    /// Index into [`PAGES`].
    pub page: usize,
    /// When a node first answered it 200 (unix µs).
    pub acked_us: Option<i64>,
    pub attempts: u32,
}

/// What the load and the faults share: the nodes that are up, and the Pages the load leaves alone for now (being
/// disconnected and connected again).
#[derive(Default)]
pub struct Shared {
    pub live: Mutex<Vec<String>>,
    pub closed: Mutex<HashSet<usize>>,
    pub events: Mutex<Vec<Event>>,
}

impl Shared {
    pub fn set_live(&self, urls: Vec<String>) {
        *self.live.lock().unwrap() = urls;
    }

    fn pick_node(&self, rng: &mut StdRng) -> Option<String> {
        let live = self.live.lock().unwrap();
        (!live.is_empty()).then(|| live[rng.random_range(0..live.len())].clone())
    }
}

/// Delivers `rate` events a second until `clock` says the faults are over, then redelivers what is still
/// unacknowledged until `deadline`.
pub async fn run(shared: Arc<Shared>, seed: u64, rate: f64, clock: Clock, deadline: Duration) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .pool_idle_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut rng = StdRng::seed_from_u64(seed ^ 0x10ad);
    let mut tasks = tokio::task::JoinSet::new();
    let every = Duration::from_secs_f64(1.0 / rate);
    let mut tick = tokio::time::interval(every);
    while !clock.faults_over() {
        tick.tick().await;
        let open: Vec<usize> = (0..PAGES.len()).filter(|p| !shared.closed.lock().unwrap().contains(p)).collect();
        if open.is_empty() {
            continue;
        }
        let page = open[rng.random_range(0..open.len())];
        let index = {
            let mut events = shared.events.lock().unwrap();
            events.push(Event { page, acked_us: None, attempts: 0 });
            events.len() - 1
        };
        let (shared, http, seed) = (shared.clone(), http.clone(), rng.random::<u64>());
        tasks.spawn(async move { deliver(&shared, &http, index, seed, deadline, clock).await });
    }
    while tasks.join_next().await.is_some() {}
}

/// Delivers event `index` until a node answers 200 or `deadline` (from the run's start) passes.
async fn deliver(shared: &Shared, http: &reqwest::Client, index: usize, seed: u64, deadline: Duration, clock: Clock) {
    let mut rng = StdRng::seed_from_u64(seed);
    let page = shared.events.lock().unwrap()[index].page;
    let body = meta_sim::webhook::text_message(
        PAGES[page].0,
        &format!("7{index:09}"),
        &format!("m_chaos_{index}"),
        &format!("hello {index}"),
        unix_us() / 1000,
    );
    let signature = meta_sim::webhook::signature(SECRET, &body);
    while clock.elapsed() < deadline {
        if let Some(node) = shared.pick_node(&mut rng) {
            shared.events.lock().unwrap()[index].attempts += 1;
            let answer = http
                .post(format!("{node}/api/facebook-webhook"))
                .header("x-hub-signature-256", &signature)
                .body(body.clone())
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().as_u16() == 200) {
                shared.events.lock().unwrap()[index].acked_us = Some(unix_us());
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..900))).await;
    }
}
