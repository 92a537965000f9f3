//! `cluster status`: the nodes (name, live or not, lease left, Pages owned) and each Page's owner, epoch, and
//! pending events (how many, and how long the oldest has waited).

use std::collections::HashMap;

use super::UsageError;
use crate::config::Settings;
use crate::startup;
use crate::store::{Backend, NodeRecord, OwnerRecord, PendingPage};

#[derive(Debug, clap::Subcommand)]
pub enum ClusterCommand {
    /// The nodes on this database and who owns each Page.
    Status {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(serde::Serialize)]
struct Status {
    nodes: Vec<Node>,
    pages: Vec<Page>,
}

#[derive(serde::Serialize)]
struct Node {
    #[serde(flatten)]
    node: NodeRecord,
    pages_owned: usize,
}

#[derive(serde::Serialize)]
struct Page {
    page_id: String,
    /// The owner's id and name, or none while the Page is unowned.
    owner: Option<i64>,
    owner_name: Option<String>,
    owner_live: bool,
    epoch: i64,
    /// Events committed for the Page and not finished yet, and the age of the oldest in seconds.
    pending: i64,
    oldest_pending_secs: Option<i64>,
}

pub async fn run(settings: &Settings, cmd: ClusterCommand) -> anyhow::Result<()> {
    let ClusterCommand::Status { json } = cmd;
    let store = startup::open_store(settings).await?;
    if store.backend() != Backend::Postgres {
        return Err(UsageError("a cluster runs on PostgreSQL; this database is SQLite".to_owned()).into());
    }
    let nodes = store.cluster_nodes().await?;
    let owners = store.page_owners().await?;
    let pending = store.inbox_pending_by_page().await?;
    let status = status(nodes, owners, pending);
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    print_tables(&status);
    Ok(())
}

fn status(nodes: Vec<NodeRecord>, owners: Vec<OwnerRecord>, pending: Vec<PendingPage>) -> Status {
    let now = crate::clock::now();
    let pending: HashMap<String, PendingPage> = pending.into_iter().map(|p| (p.page_id.clone(), p)).collect();
    let mut owned: HashMap<i64, usize> = HashMap::new();
    for o in &owners {
        if let Some(node) = o.owner {
            *owned.entry(node).or_default() += 1;
        }
    }
    let by_id: HashMap<i64, &NodeRecord> = nodes.iter().map(|n| (n.id, n)).collect();
    let pages = owners
        .iter()
        .map(|o| {
            let node = o.owner.and_then(|id| by_id.get(&id));
            let waiting = pending.get(o.page_id.as_str());
            Page {
                pending: waiting.map_or(0, |p| p.pending),
                oldest_pending_secs: waiting.map(|p| (now - p.oldest).num_seconds()),
                page_id: o.page_id.to_string(),
                owner: o.owner,
                owner_name: node.map(|n| n.name.clone()),
                owner_live: node.is_some_and(|n| n.live),
                epoch: o.epoch,
            }
        })
        .collect();
    let nodes =
        nodes.into_iter().map(|node| Node { pages_owned: owned.get(&node.id).copied().unwrap_or(0), node }).collect();
    Status { nodes, pages }
}

fn print_tables(status: &Status) {
    if status.nodes.is_empty() {
        println!("no node has joined a cluster on this database (cluster.mode = \"postgres\")");
    } else {
        println!("{:>6}  {:<32} {:<6} {:>12} {:>6}", "node", "name", "live", "lease left", "pages");
        for n in &status.nodes {
            let lease =
                if n.node.live { format!("{:.1} s", n.node.lease_left_ms as f64 / 1000.0) } else { "-".to_owned() };
            let live = if n.node.live {
                "yes"
            } else if n.node.left_at.is_some() {
                "left"
            } else {
                "no"
            };
            println!("{:>6}  {:<32} {:<6} {:>12} {:>6}", n.node.id, n.node.name, live, lease, n.pages_owned);
        }
    }
    if !status.pages.is_empty() {
        println!();
        println!("{:<20} {:<32} {:>6} {:>8} {:>12}", "page", "owner", "epoch", "pending", "oldest");
        for p in &status.pages {
            let owner = match (&p.owner_name, p.owner_live) {
                (Some(name), true) => format!("{name} (node {})", p.owner.unwrap_or_default()),
                (Some(name), false) => format!("{name} (gone)"),
                (None, _) => "none".to_owned(),
            };
            let oldest = p.oldest_pending_secs.map_or_else(|| "-".to_owned(), |s| format!("{s} s"));
            println!("{:<20} {:<32} {:>6} {:>8} {:>12}", p.page_id, owner, p.epoch, p.pending, oldest);
        }
    }
}
