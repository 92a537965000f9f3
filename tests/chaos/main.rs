//! The chaos run: three real `switchboard serve` nodes in cluster mode on a PostgreSQL server of the run's own,
//! the Meta stand-in, a steady load of signed webhooks to random live nodes, and, from a seeded schedule, a fault
//! every few seconds: kill -9 and restart, SIGSTOP past the lease, SIGTERM and restart, a node's database
//! connections terminated, PostgreSQL restarted, a Page disconnected and connected again through Facebook Login,
//! a client's rules or send rate changed. At the end it checks invariants (see `verdict`), prints a table, and
//! exits non-zero naming the seed if one broke.
//!
//! A test target of its own (`harness = false`), so `cargo test` runs it on every change, alone, after the
//! integration suite: about a minute with a fresh seed each time. `CHAOS_SEED=N` replays a run's schedule,
//! `CHAOS_SECS` sets how long faults go on (60), `CHAOS_RATE` the webhooks per second (40), `CHAOS_FAULTS` a
//! comma-separated subset of fault kinds. The 5-minute run whose figures the README gives is
//! `CHAOS_SECS=300 cargo test --release --test chaos`. Everything listens on 127.0.0.1 and stops by itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../common/login.rs"]
mod login;
#[path = "../common/processes.rs"]
mod processes;
#[path = "../common/replies.rs"]
mod replies;

mod faults;
mod load;
mod verdict;
mod world;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use faults::Kind;

/// The name `cargo test` filters match against.
const NAME: &str = "chaos_run";
/// How long after the faults end Meta keeps redelivering, and the run waits for answers.
const SETTLE: Duration = Duration::from_secs(60);

/// The run's clock: faults go on for `faults_for` from `start`.
#[derive(Clone, Copy)]
pub struct Clock {
    start: Instant,
    faults_for: Duration,
}

impl Clock {
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    pub fn faults_over(&self) -> bool {
        self.start.elapsed() >= self.faults_for
    }
}

pub fn unix_us() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f.as_str())) {
        println!("running 0 tests (the chaos run is filtered out)");
        return ExitCode::SUCCESS;
    }
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    let secs = env("CHAOS_SECS", 60u64);
    let rate = env("CHAOS_RATE", 40.0f64);
    let kinds = match std::env::var("CHAOS_FAULTS") {
        Ok(list) => match list.split(',').map(kind).collect::<Option<Vec<Kind>>>() {
            Some(kinds) if !kinds.is_empty() => kinds,
            _ => {
                eprintln!("CHAOS_FAULTS: a comma-separated list of {}", KINDS.map(|(n, _)| n).join(", "));
                return ExitCode::from(2);
            }
        },
        Err(_) => KINDS.map(|(_, k)| k).to_vec(),
    };
    println!("chaos run: seed {seed} (CHAOS_SEED={seed} replays it), faults for {secs} s, {rate} webhooks/s, 3 nodes");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let failures = runtime.block_on(run(seed, Duration::from_secs(secs), rate, &kinds));
    if failures.is_empty() {
        println!("chaos run passed (seed {seed})");
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            eprintln!("invariant broken: {f}");
        }
        eprintln!("chaos run FAILED with seed {seed}: replay it with CHAOS_SEED={seed}");
        ExitCode::FAILURE
    }
}

const KINDS: [(&str, Kind); 8] = [
    ("kill", Kind::Kill),
    ("pause", Kind::Pause),
    ("deploy", Kind::Deploy),
    ("cut", Kind::CutConnections),
    ("pg-restart", Kind::RestartPostgres),
    ("reconnect", Kind::Reconnect),
    ("rules", Kind::Rules),
    ("rate", Kind::Rate),
];

fn kind(name: &str) -> Option<Kind> {
    KINDS.iter().find(|(n, _)| *n == name.trim()).map(|(_, k)| *k)
}

async fn run(seed: u64, faults_for: Duration, rate: f64, kinds: &[Kind]) -> Vec<String> {
    let mut world = world::World::new(3).await;
    // The black-box start: the Pages are connected through Facebook Login on the first node a moment after
    // the nodes started, and webhooks go to every node at once.
    let first = world.live()[0].1.clone();
    for (client, pages) in [
        ("woodstock-outlet", [world::PAGES[0].0, world::PAGES[2].0]),
        ("rural-king", [world::PAGES[1].0, world::PAGES[3].0]),
    ] {
        if let Err(e) = world.connect(client, &pages, &first, &first).await {
            return vec![format!("connecting {pages:?} through Facebook Login: {e}")];
        }
    }
    let shared = Arc::new(load::Shared::default());
    shared.set_live(world.live().into_iter().map(|(_, url)| url).collect());
    let clock = Clock { start: Instant::now(), faults_for };
    let load = tokio::spawn(load::run(shared.clone(), seed, rate, clock, faults_for + SETTLE));
    let faults = faults::run(&mut world, &shared, seed, &clock, kinds).await;
    // Every node is up again; Meta redelivers what was not acknowledged, and the run waits for the answers.
    shared.set_live(world.live().into_iter().map(|(_, url)| url).collect());
    let _ = load.await;
    let events = shared.events.lock().unwrap().clone();
    settle(&world, &events, clock.start + faults_for + SETTLE).await;
    let verdict = verdict::judge(&world, &events, &faults).await;
    verdict.print();
    let failures = verdict.failures();
    if !failures.is_empty() {
        for fault in &faults {
            println!("fault: {:?}", fault);
        }
        for line in world.logged("").iter().filter(|l| l.contains("WARN") || l.contains("ERROR")).rev().take(60) {
            println!("{line}");
        }
    }
    failures
}

/// Waits until every acknowledged event is answered or finished, or `until`.
async fn settle(world: &world::World, events: &[load::Event], until: Instant) {
    while Instant::now() < until {
        let replies = world.replies();
        let unanswered =
            events.iter().enumerate().filter(|(i, e)| e.acked_us.is_some() && !replies.contains_key(i)).count();
        let pending = world
            .store
            .inbox_counts()
            .await
            .map_or(1, |c| c.iter().filter(|(s, _)| s == "pending").map(|(_, n)| *n).sum());
        if unanswered == 0 && pending == 0 {
            return;
        }
        // Unanswered events of a disconnected Page stay so: once nothing is pending, waiting longer changes nothing.
        if pending == 0 && Instant::now() + Duration::from_secs(5) < until {
            tokio::time::sleep(Duration::from_secs(5)).await;
            let again = world.replies().len();
            if again == replies.len() {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
