//! What the engine's parts share, and the narrow slice of it a tenant gets.
//!
//! [`Shared`] is built once per engine: the ports to the outside world, the settings, each page's figures,
//! the tracker of every task a tenant starts, and the registry. The supervisor makes a [`TenantContext`] from
//! it for each tenant it starts: the tenant's own page and figures, the ports and settings, the task tracker,
//! and of the registry only the right to retire its own actor.

use std::future::Future;
use std::sync::Arc;

use dashmap::DashMap;
use ractor::ActorId;
use tokio_util::task::TaskTracker;

use crate::domain::page::PageId;
use crate::engine::registry::Registry;
use crate::ports::{EventSink, GraphApi, StatusSink, TenantSource};
use crate::settings::EngineSettings;
use crate::telemetry::stats::TenantStats;

/// The engine's view of the outside world.
pub(crate) struct Ports {
    pub source: Arc<dyn TenantSource>,
    pub graph: Arc<dyn GraphApi>,
    pub status: Arc<dyn StatusSink>,
    pub events: Arc<dyn EventSink>,
}

/// What the router, the supervisor and (through [`TenantContext`]) the tenants share.
pub(crate) struct Shared {
    pub ports: Arc<Ports>,
    pub settings: Arc<EngineSettings>,
    pub registry: Registry,
    /// Per page, kept while the process runs (a tenant's actor comes and goes).
    pub stats: DashMap<PageId, Arc<TenantStats>>,
    /// Every task a tenant starts (loading its integration, asking its bot, a Send API call, a report to
    /// storage). Shutdown waits for them, so answers Meta gave reach storage.
    pub tasks: TaskTracker,
}

impl Shared {
    pub fn stats_for(&self, page: &PageId) -> Arc<TenantStats> {
        self.stats.entry(page.clone()).or_default().clone()
    }

    /// The context of the tenant of `page`, which this engine runs under `epoch`.
    pub fn context(&self, page: PageId, epoch: i64) -> TenantContext {
        let current: Current = {
            let (registry, page, generation) = (self.registry.clone(), page.clone(), self.registry.generation(&page));
            Arc::new(move || registry.epoch(&page) == Some(epoch) && registry.generation(&page) == generation)
        };
        TenantContext {
            stats: self.stats_for(&page),
            ports: self.ports.clone(),
            settings: self.settings.clone(),
            tasks: self.tasks.clone(),
            registry: self.registry.clone(),
            current,
            page,
        }
    }
}

/// What one tenant may use.
pub(crate) struct TenantContext {
    pub page: PageId,
    pub ports: Arc<Ports>,
    pub settings: Arc<EngineSettings>,
    pub stats: Arc<TenantStats>,
    tasks: TaskTracker,
    registry: Registry,
    /// Whether the engine still runs this page under the epoch the tenant started with, and has not stopped the
    /// tenant from outside since (made once, so the tasks the tenant starts ask it without an allocation each).
    current: Current,
}

/// A question a tenant's tasks ask as they go.
pub(crate) type Current = Arc<dyn Fn() -> bool + Send + Sync>;

impl TenantContext {
    /// Runs `work` as a task shutdown waits for.
    pub fn spawn(&self, work: impl Future<Output = ()> + Send + 'static) {
        self.tasks.spawn(work);
    }

    /// Whether the engine still runs this tenant's page under the epoch it started with: a tenant whose page
    /// the engine let go of since (a cluster moved it, even if it came back under a new epoch) starts no Send
    /// API call.
    pub fn is_current(&self) -> bool {
        (self.current)()
    }

    /// Whether this tenant may still settle replies of unknown outcome, asked as it goes: its page is still the
    /// engine's as when it started, and the engine is not stopping. Settling reads conversations at Meta's
    /// pace, seconds per event: a tenant whose page moved leaves it to the new owner, and a stopping engine to
    /// its next start, rather than keep a handover or a deploy waiting.
    pub fn may_settle(&self) -> Current {
        let (current, registry) = (self.current(), self.registry.clone());
        Arc::new(move || current() && !registry.is_stopping())
    }

    /// [`TenantContext::is_current`], to ask from a task the tenant started.
    pub fn current(&self) -> Current {
        self.current.clone()
    }

    /// Retires this tenant's actor `actor` if the registry still routes to it (an idle tenant stopping).
    pub fn retire(&self, actor: ActorId) -> bool {
        self.registry.retire(&self.page, actor)
    }
}
