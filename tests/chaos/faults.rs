//! The faults, from a seeded schedule: every few seconds one of them, each done in full before the next.

use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::load::Shared;
use crate::world::{LEASE_TTL, PAGES, World};
use crate::{Clock, unix_us};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// kill -9 of a node, started again a moment later.
    Kill,
    /// SIGSTOP past the lease, then SIGCONT.
    Pause,
    /// SIGTERM and start again (a rolling deploy's step).
    Deploy,
    /// Every PostgreSQL connection of one node terminated.
    CutConnections,
    /// PostgreSQL restarted (fast: connections cut, transactions rolled back).
    RestartPostgres,
    /// A Page disconnected, then connected again through Facebook Login on a random node.
    Reconnect,
    /// A client's rules (its fallback answer) changed.
    Rules,
    /// A client's send rate changed.
    Rate,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Kill => "kill -9 + restart",
            Kind::Pause => "SIGSTOP past lease",
            Kind::Deploy => "SIGTERM + restart",
            Kind::CutConnections => "pg_terminate_backend",
            Kind::RestartPostgres => "PostgreSQL restart",
            Kind::Reconnect => "Page reconnected",
            Kind::Rules => "rules changed",
            Kind::Rate => "send rate changed",
        }
    }
}

/// A fault as it was done.
#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: Kind,
    /// What it acted on: a node's name, a Page, a client.
    pub target: String,
    /// When it began and when it was over (unix µs): a node started again, a process resumed, PostgreSQL up
    /// again, a Page connected again.
    pub began_us: i64,
    pub ended_us: i64,
    /// How long, within it, nothing could be answered by design (PostgreSQL down), in µs.
    pub outage_us: i64,
    /// The Page disconnected (a reconnect): from when its disconnect was stored, until its login began.
    pub disconnected_us: Option<i64>,
    pub reconnecting_us: Option<i64>,
    /// A rules change: the version now in force.
    pub rules_version: Option<u32>,
    pub failed: Option<String>,
}

/// Runs faults from `seed` until `clock` says they are over (`kinds`: which ones may be drawn).
pub async fn run(world: &mut World, shared: &Arc<Shared>, seed: u64, clock: &Clock, kinds: &[Kind]) -> Vec<Fault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    let mut rules_version = 0;
    tokio::time::sleep(Duration::from_secs(3)).await;
    while !clock.faults_over() {
        let kind = kinds[rng.random_range(0..kinds.len())];
        let mut fault = Fault {
            kind,
            target: String::new(),
            began_us: unix_us(),
            ended_us: 0,
            outage_us: 0,
            disconnected_us: None,
            reconnecting_us: None,
            rules_version: None,
            failed: None,
        };
        let done = act(world, shared, &mut rng, &mut fault, &mut rules_version).await;
        fault.ended_us = unix_us();
        fault.failed = done.err();
        if let Some(why) = &fault.failed {
            eprintln!("chaos: {} on {} could not be done: {why}", kind.name(), fault.target);
        }
        faults.push(fault);
        shared.set_live(live_urls(world));
        tokio::time::sleep(Duration::from_millis(rng.random_range(2_500..5_000))).await;
    }
    faults
}

fn live_urls(world: &World) -> Vec<String> {
    world.live().into_iter().map(|(_, url)| url).collect()
}

async fn act(
    world: &mut World,
    shared: &Arc<Shared>,
    rng: &mut StdRng,
    fault: &mut Fault,
    rules_version: &mut u32,
) -> Result<(), String> {
    let nodes = world.nodes.len();
    let i = rng.random_range(0..nodes);
    let name = world.nodes[i].0.clone();
    match fault.kind {
        Kind::Kill => {
            fault.target = name;
            world.kill(i);
            shared.set_live(live_urls(world));
            tokio::time::sleep(Duration::from_millis(rng.random_range(300..2_000))).await;
            world.start(i);
        }
        Kind::Pause => {
            fault.target = name;
            world.signal(i, "STOP");
            // A load balancer's health check takes a node that stops answering out.
            shared.set_live(live_urls(world).into_iter().filter(|u| Some(u) != world.url(i).as_ref()).collect());
            tokio::time::sleep(LEASE_TTL + Duration::from_millis(rng.random_range(500..1_500))).await;
            world.signal(i, "CONT");
            world.resumed.push((unix_us(), i));
        }
        Kind::Deploy => {
            fault.target = name;
            shared.set_live(live_urls(world).into_iter().filter(|u| Some(u) != world.url(i).as_ref()).collect());
            world.stop(i)?;
            world.start(i);
        }
        Kind::CutConnections => {
            fault.target = name.clone();
            world.cut_connections(&name).await?;
        }
        Kind::RestartPostgres => {
            fault.target = "PostgreSQL".to_owned();
            let down = unix_us();
            world.pg.stop();
            tokio::time::sleep(Duration::from_millis(rng.random_range(200..1_000))).await;
            world.pg.start_again();
            fault.outage_us = unix_us() - down;
        }
        Kind::Reconnect => {
            let page = rng.random_range(0..PAGES.len());
            let (id, client) = PAGES[page];
            fault.target = id.to_owned();
            shared.closed.lock().unwrap().insert(page);
            let disconnected = world.cli(&["integration", "disconnect", id]);
            fault.disconnected_us = Some(unix_us());
            let connected = match disconnected {
                Ok(_) => {
                    tokio::time::sleep(Duration::from_millis(rng.random_range(500..2_500))).await;
                    let live = world.live();
                    let start = &live[rng.random_range(0..live.len())].1;
                    let finish = &live[rng.random_range(0..live.len())].1;
                    fault.reconnecting_us = Some(unix_us());
                    world.connect(client, &[id], start, finish).await
                }
                Err(e) => Err(e),
            };
            shared.closed.lock().unwrap().remove(&page);
            connected?;
        }
        Kind::Rules => {
            let client = PAGES[rng.random_range(0..PAGES.len())].1;
            *rules_version += 1;
            fault.target = client.to_owned();
            fault.rules_version = Some(*rules_version);
            let rules =
                serde_json::json!({ "fallback": format!("v{rules_version}: thanks, {client} will answer soon") });
            let file = std::env::temp_dir().join(format!("chaos-rules-{}-{rules_version}.json", std::process::id()));
            std::fs::write(&file, rules.to_string()).map_err(|e| e.to_string())?;
            let set = world.cli(&["client", "set-responder", client, "rules", "--file", &file.display().to_string()]);
            let _ = std::fs::remove_file(&file);
            set?;
        }
        Kind::Rate => {
            let client = PAGES[rng.random_range(0..PAGES.len())].1;
            let rate = [50, 100, 200, 400][rng.random_range(0..4)];
            fault.target = format!("{client} at {rate}/s");
            world.cli(&["client", "set-rate", client, &rate.to_string()])?;
        }
    }
    Ok(())
}
