//! Running as a cluster on PostgreSQL (`cluster.mode = "postgres"`): any number of `switchboard serve`
//! processes on one database, behind any load balancer.
//!
//! - Every node takes every request. A webhook is committed to the inbox by whichever node got it; if another
//!   node owns the Page, that node is woken with a NOTIFY (one per batch of Pages) and takes the Page's pending
//!   events. The sweeper stays the backstop, since NOTIFY is not durable.
//! - Each node incarnation holds a lease (`cluster_nodes`) renewed every quarter TTL from PostgreSQL's clock
//!   (`node`). Each connected Page has at most one owner and an epoch that grows with every claim
//!   (`page_owners`). Which live node should own a Page: rendezvous hashing (`rendezvous`). A node claims the
//!   Pages it should own whose owner is gone, and drains and releases the ones it should no longer own.
//! - Fencing: recording replies and finishing events hold only while the node owns the Page at the epoch the
//!   event was handed over under and its lease runs, checked in the same statement (`store::postgres`). The
//!   Graph API gate (`gate`) starts no call for a Page the node does not own, nor past the lease deadline kept
//!   on the node's own monotonic clock, which ends before the database's lease does.
//! - Control changes (a Page connected, reconnected, disconnected, its bot changed) are NOTIFYed to every node;
//!   the owner reloads the tenant (`signals`). Owners keep a snapshot of each Page's figures in the database
//!   for the portal (`figures`). Pruning runs on one node: the oldest live one.

mod figures;
mod gate;
mod node;
mod rendezvous;
mod signals;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use switchboard_actors::Router;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use self::figures::shared_figures;
pub use self::gate::GatedGraph;
use crate::adapters::Directory;
use crate::inbox::Inbox;
use crate::ownership::{Owned, Wakes};
use crate::store::Store;

/// NOTIFY channels: pages with new pending events (payload: page ids, comma-separated), an integration that
/// changed (payload: a page id), and Pages released or a node gone (payload: informative).
pub const WAKE_CHANNEL: &str = "switchboard_wake";
pub use crate::store::DIRECTORY_CHANNEL;
pub const OWNERS_CHANNEL: &str = "switchboard_owners";

/// Pages this node claimed, released, or lost with its lease.
pub const CLAIMS: &str = "switchboard_cluster_claims_total";
pub const RELEASES: &str = "switchboard_cluster_releases_total";
pub const LEASES_LOST: &str = "switchboard_cluster_leases_lost_total";
/// Pages this node owns now.
pub const OWNED_PAGES: &str = "switchboard_cluster_owned_pages";
/// Lease renewals this node made.
pub const RENEWALS: &str = "switchboard_cluster_lease_renewals_total";
/// Live nodes, as this node's claim loop last saw them.
pub const LIVE_NODES: &str = "switchboard_cluster_live_nodes";

/// What a cluster node is built from.
pub struct Parts {
    pub store: Store,
    pub router: Router,
    pub inbox: Inbox,
    pub directory: Directory,
    pub owned: Arc<Owned>,
    /// Where the inbox sends the Pages whose owners must be woken.
    pub wakes: tokio::sync::mpsc::Receiver<switchboard_actors::PageId>,
    pub name: String,
    pub lease_ttl: Duration,
    /// How long a Page's Send API calls in flight are waited for when it is handed over.
    pub send_drain: Duration,
    /// The database URL, for the LISTEN connection (its own, never through a pooler).
    pub database_url: String,
}

/// A running cluster node. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    router: Router,
    inbox: Inbox,
    directory: Directory,
    owned: Arc<Owned>,
    name: String,
    lease_ttl: Duration,
    send_drain: Duration,
    /// Run the claim loop now (a node left, a Page was released).
    tick: Notify,
    /// The oldest live node runs the cluster's singletons (pruning).
    leader: AtomicBool,
    stop: CancellationToken,
    tasks: TaskTracker,
    figures: figures::Baselines,
}

/// The queue between the inbox and the notifier: a burst of webhooks for other nodes' Pages fits in it.
pub const WAKE_QUEUE: usize = 65_536;

/// A queue for [`Wakes`], and its receiving end for [`Parts::wakes`].
pub fn wake_queue() -> (Wakes, tokio::sync::mpsc::Receiver<switchboard_actors::PageId>) {
    let (tx, rx) = tokio::sync::mpsc::channel(WAKE_QUEUE);
    (Wakes::new(tx), rx)
}

impl Cluster {
    /// Joins the cluster and starts the node's loops: the lease and the claims, the LISTEN connection, the
    /// notifier, the figure snapshots.
    pub async fn start(parts: Parts) -> anyhow::Result<Self> {
        let inner = Arc::new(Inner {
            store: parts.store,
            router: parts.router,
            inbox: parts.inbox,
            directory: parts.directory,
            owned: parts.owned,
            name: parts.name,
            lease_ttl: parts.lease_ttl,
            send_drain: parts.send_drain,
            tick: Notify::new(),
            leader: AtomicBool::new(false),
            stop: CancellationToken::new(),
            tasks: TaskTracker::new(),
            figures: figures::Baselines::default(),
        });
        inner.join().await?;
        let listener = signals::listen(&parts.database_url).await?;
        inner.tasks.spawn(inner.clone().run_claims());
        inner.tasks.spawn(inner.clone().run_signals(listener));
        inner.tasks.spawn(inner.clone().run_notifier(parts.wakes));
        inner.tasks.spawn(inner.clone().run_figures());
        Ok(Self { inner })
    }

    /// This node runs the cluster's singletons (the oldest live node does).
    pub fn is_leader(&self) -> bool {
        self.inner.leader.load(Ordering::Acquire)
    }

    /// What this node owns.
    pub fn owned(&self) -> &Arc<Owned> {
        &self.inner.owned
    }

    /// Leaves the cluster (SIGTERM, a rolling deploy): every Page is drained and released at once, and the
    /// other nodes are told, so they claim them without waiting for the lease to run out.
    pub async fn leave(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.tasks.close();
        inner.tasks.wait().await;
        inner.release_all().await;
        let node = inner.owned.node();
        if node != 0 {
            if let Err(e) = inner.store.node_leave(node).await {
                tracing::warn!(error = %e, "cannot record leaving the cluster; the lease will run out instead");
            }
            let _ = inner.store.notify(OWNERS_CHANNEL, &format!("left {node}")).await;
        }
        inner.owned.lost();
        tracing::info!(node, name = %inner.name, "left the cluster");
    }
}
