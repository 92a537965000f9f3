//! Start-up: from validated settings to a running server.
//!
//! `open_store` connects and migrates; `open_vault` loads the key ring and proves it holds every stored
//! secret's key id, failing with one clear line otherwise. `Application` starts the engine, binds the
//! listener (port 0 in tests) and serves until a shutdown future resolves, bounded by a grace period.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use secrecy::ExposeSecret as _;
use switchboard_actors::{EngineDeps, EveryPage, GraphApi, Router, Tenure};
use tokio::net::TcpListener;

use crate::adapters::ai::Ai;
use crate::adapters::{Directory, StoreStatus, StoreTenants, reconcile};
use crate::background::{Background, First};
use crate::clients::Clients;
use crate::cluster::{self, Cluster, GatedGraph};
use crate::config::{ClusterMode, InboxMode, Settings};
use crate::history::History;
use crate::http::portal::PortalState;
use crate::http::portal::session::{LoginThrottle, SessionPace};
use crate::http::server;
use crate::http::throttle::Throttle;
use crate::http::{self, HttpState, WebhookState};
use crate::inbox::{InFlight, Inbox, Ingest, StoreEvents, Watchdog};
use crate::meta::graph::GraphClient;
use crate::meta::webhook::WebhookSecrets;
use crate::onboarding::Onboarding;
use crate::ownership::{Owned, Wakes};
use crate::secrets::vault::{KeyRing, KeySource, VaultError};
use crate::store::{self, IntegrationStatus, Store};

/// Connects to the configured database and applies pending migrations.
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let url = settings.database.url.expose_secret();
    let store = store::connect(url, settings.database.max_connections)
        .await
        .with_context(|| format!("cannot open the database at {}", redact_url(url)))?;
    store.migrate().await.context("cannot apply database migrations")?;
    Ok(store)
}

/// Loads the key ring and checks that it holds every key id found in stored tokens.
pub async fn open_vault(settings: &Settings, store: &Store) -> anyhow::Result<KeyRing> {
    let keys = key_source(settings)?.load()?;
    let stored = store.token_key_ids().await.context("cannot read stored key ids")?;
    keys.check_known(&stored)?;
    Ok(keys)
}

/// Where the key ring comes from: the configured keys, or (an in-memory SQLite database, which keeps nothing)
/// a key for this run only. Anything else without keys fails closed; only `switchboard demo` makes a key file
/// of its own (see `demo`).
pub fn key_source(settings: &Settings) -> Result<KeySource, VaultError> {
    if let Some(keys) = &settings.vault.keys {
        return Ok(KeySource::Inline(keys.clone()));
    }
    if let Some(path) = &settings.vault.key_file {
        return Ok(KeySource::File(path.clone()));
    }
    let url = settings.database.url.expose_secret();
    if url.starts_with("sqlite:") && store::sqlite::is_in_memory(url) {
        return Ok(KeySource::Ephemeral);
    }
    // Earlier versions made `<database>.keys` for any SQLite file: name it rather than leave the operator to
    // find it.
    if url.starts_with("sqlite:")
        && let Some(db) = store::sqlite::database_path(url)
    {
        let mut name = db.into_os_string();
        name.push(".keys");
        let path = std::path::PathBuf::from(name);
        if path.is_file() {
            return Err(VaultError::KeyFileNotConfigured(path));
        }
    }
    Err(VaultError::NoKey)
}

/// A database URL as it may be printed: without its password, in any form sqlx accepts (`user:pass@`,
/// `?password=`, also as `pass` or `sslpassword`), and nothing of one that does not parse as a URL.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "(a database URL that is not a valid URL; not shown)".to_owned();
    };
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    let secret = |k: &str| k.eq_ignore_ascii_case("password") || k.eq_ignore_ascii_case("sslpassword");
    if url.query_pairs().any(|(k, _)| secret(&k)) {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret(&k) { "***".to_owned() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// The running server: a bound listener, the engine, and what the routes need.
pub struct Application {
    listener: TcpListener,
    /// `/metrics`, on its own listener (loopback by default), never on the public one.
    metrics_listener: TcpListener,
    metrics_routes: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    store: Store,
    router: Router,
    onboarding: Onboarding,
    inbox: Option<Inbox>,
    routes: warp::filters::BoxedFilter<(warp::reply::Response,)>,
    limits: server::Limits,
    /// Token health, directory reconcile, pruning, the inbox sweeper, metrics upkeep: stopped with the server.
    background: Background,
    /// In a cluster: this node's membership, left at shutdown.
    cluster: Option<Cluster>,
}

impl Application {
    /// Opens storage and the vault, starts the engine with every connected page in its directory, and
    /// binds `settings.server.bind`.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        settings.require_for_serve()?;
        let listener = TcpListener::bind(settings.server.bind)
            .await
            .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
        Self::build_with_listener(settings, listener).await
    }

    /// Like `build`, on a listener the caller bound (so a test knows its address before the public URL
    /// is set).
    pub async fn build_with_listener(settings: &Settings, listener: TcpListener) -> anyhow::Result<Self> {
        settings.require_for_serve()?;
        let metrics_listener = TcpListener::bind(settings.server.metrics_bind)
            .await
            .with_context(|| format!("cannot listen on {} for metrics", settings.server.metrics_bind))?;
        let store = open_store(settings).await?;
        let keys = Arc::new(open_vault(settings, &store).await?);
        tracing::info!(current_key = %keys.current_key_id(), "key ring loaded");
        let metrics = metrics_handle();
        let mode = if settings.cluster.mode == ClusterMode::Postgres { "postgres" } else { "single" };
        crate::telemetry::catalog::describe(&settings.cluster.node_name, mode);
        let graph = Arc::new(graph_client(settings)?);
        let owned = (settings.cluster.mode == ClusterMode::Postgres).then(|| Arc::new(Owned::default()));
        let (wakes, wake_queue) = cluster::wake_queue();
        let ai = settings.ai.clone().map(|s| Arc::new(Ai::new(s, store.clone())));
        let engine = start_engine(
            settings,
            store.clone(),
            keys.clone(),
            graph.clone(),
            owned.clone().map(|o| (o, wakes)),
            ai.clone(),
        )
        .await?;
        let (router, inbox) = (engine.router, engine.inbox);
        let directory = Directory::new(store.clone(), router.clone());
        let cluster = match (owned, &inbox) {
            (Some(owned), Some(inbox)) => Some(
                Cluster::start(cluster::Parts {
                    store: store.clone(),
                    router: router.clone(),
                    inbox: inbox.clone(),
                    directory: directory.clone(),
                    owned,
                    wakes: wake_queue,
                    name: settings.cluster.node_name.clone(),
                    lease_ttl: settings.cluster.lease_ttl,
                    send_drain: settings.engine.engine.send_drain,
                    database_url: settings.database.url.expose_secret().to_owned(),
                })
                .await
                .context("cannot join the cluster")?,
            ),
            _ => None,
        };
        let onboarding = Onboarding::new(settings, store.clone(), keys, graph, Some(router.clone()))
            .in_cluster(cluster.as_ref().map(|c| c.owned().clone()));
        let app_secret = settings.meta.app_secrets.first().context("META_APP_SECRET is required")?;
        let throttle = Throttle::new(store.clone(), app_secret);
        let running = Running {
            store: &store,
            router: &router,
            onboarding: &onboarding,
            inbox: inbox.as_ref(),
            directory: &directory,
            cluster: cluster.as_ref(),
            throttle: &throttle,
            ai: ai.as_ref(),
        };
        let background = background_jobs(settings, &running, &metrics);
        let routes = routes(settings, &running)?;
        Ok(Self {
            listener,
            metrics_listener,
            metrics_routes: http::metrics_routes(metrics),
            store,
            router,
            onboarding,
            inbox,
            routes,
            limits: limits(&settings.server),
            background,
            cluster,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where `/metrics` is served.
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_listener.local_addr().expect("a bound listener has an address")
    }

    /// The engine's facade (for tests and the CLI's in-process commands).
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Onboarding, disconnects and Meta's callbacks, as the routes use them (for tests and tools).
    pub fn onboarding(&self) -> &Onboarding {
        &self.onboarding
    }

    /// The durable inbox (durable mode only).
    pub fn inbox(&self) -> Option<&Inbox> {
        self.inbox.as_ref()
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish for at most the grace period
    /// and stops the engine.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "switchboard listening");
        tracing::info!(metrics = %self.metrics_addr(), "Prometheus metrics served at /metrics");
        let stop = tokio_util::sync::CancellationToken::new();
        let metrics_limits =
            server::Limits { max_connections: 64, max_connections_per_address: 0, ..self.limits.clone() };
        let metrics = tokio::spawn(server::serve(
            self.metrics_listener,
            self.metrics_routes,
            metrics_limits,
            stop.clone().cancelled_owned(),
        ));
        server::serve(self.listener, self.routes, self.limits.clone(), shutdown).await;
        stop.cancel();
        let _ = metrics.await;
        self.background.stop().await;
        if let Some(cluster) = &self.cluster {
            cluster.leave().await;
        }
        self.router.shutdown().await;
        if let Some(inbox) = &self.inbox
            && tokio::time::timeout(self.limits.shutdown_grace, inbox.flush()).await.is_err()
        {
            tracing::warn!(
                "inbox progress not stored before shutdown; some replies may be sent again at the next start"
            );
        }
        if tokio::time::timeout(self.limits.shutdown_grace, self.store.close()).await.is_err() {
            tracing::warn!("database connections still in use after the grace period; stopping without them");
        }
        tracing::info!("switchboard stopped");
        Ok(())
    }
}

/// The public routes: the webhook, OAuth and Meta's callbacks, the portal, health.
/// What the routes and the background jobs of a running server are built from.
struct Running<'a> {
    store: &'a Store,
    router: &'a Router,
    onboarding: &'a Onboarding,
    inbox: Option<&'a Inbox>,
    directory: &'a Directory,
    cluster: Option<&'a Cluster>,
    throttle: &'a Arc<Throttle>,
    ai: Option<&'a Arc<Ai>>,
}

fn routes(
    settings: &Settings,
    r: &Running<'_>,
) -> anyhow::Result<warp::filters::BoxedFilter<(warp::reply::Response,)>> {
    let Running { store, router, onboarding, inbox, directory, throttle, ai, .. } = *r;
    let cluster = r.cluster.is_some();
    let app_secret = settings.meta.app_secrets.first().context("META_APP_SECRET is required")?;
    let webhook = WebhookState {
        secrets: Arc::new(WebhookSecrets::new(&settings.meta.app_secrets)),
        verify_token: Arc::new(settings.meta.verify_token.clone().context("META_VERIFY_TOKEN is required")?),
        max_body_bytes: settings.server.max_body_bytes,
        ingest: match inbox {
            Some(inbox) => Ingest::durable(
                inbox.clone(),
                router.clone(),
                directory.clone(),
                settings.inbox.receipts == InboxMode::Durable,
            ),
            None => Ingest::in_memory(router.clone(), directory.clone()),
        },
    };
    let portal = PortalState {
        store: store.clone(),
        clients: Clients::new(store.clone(), Some(router.clone())),
        onboarding: onboarding.clone(),
        router: router.clone(),
        secure: settings.server.public_url.scheme() == "https",
        throttle: LoginThrottle::new(app_secret, throttle.clone()),
        pace: SessionPace::new(),
        session_ttl: settings.session_ttl,
        shared_figures: cluster,
        fallback_reply: settings.engine.fallback_reply.clone(),
        human_pause: settings.engine.engine.human_pause,
        keeps_messages: settings.inbox.mode == InboxMode::Durable,
        relay_allow_private: settings.engine.relay.allow_private,
        send_rate: settings.engine.send_rate_per_page,
        stuck_after: settings.inbox.stuck_after,
        ai: ai.cloned(),
    };
    Ok(http::routes(HttpState {
        bodies: http::BodyBudget::new(
            settings.server.max_body_memory_bytes,
            settings.server.max_body_bytes,
            settings.server.webhook_sender_ranges.clone(),
        ),
        store: store.clone(),
        router: router.clone(),
        webhook,
        security: http::SecurityHeaders::new(
            &settings.meta.oauth_dialog_url,
            settings.server.public_url.scheme() == "https",
        ),
        onboarding: onboarding.clone(),
        portal,
        throttle: throttle.clone(),
    }))
}

fn limits(server: &crate::config::ServerSettings) -> server::Limits {
    server::Limits {
        first_byte_timeout: server.first_byte_timeout,
        header_read_timeout: server.header_read_timeout,
        keep_alive_timeout: server.keep_alive_timeout,
        request_timeout: server.request_timeout,
        max_connection_age: server.max_connection_age,
        max_connections: server.max_connections,
        max_connections_per_address: server.max_connections_per_address,
        trusted_proxies: server::TrustedProxies::new(server.trusted_proxies.clone()),
        shutdown_grace: server.shutdown_grace,
    }
}

/// The Graph API client from the settings.
pub fn graph_client(settings: &Settings) -> anyhow::Result<GraphClient> {
    let secret = settings.meta.app_secrets.first().cloned().context("META_APP_SECRET is required")?;
    GraphClient::new(
        settings.meta.graph_url.clone(),
        &settings.meta.api_version,
        settings.meta.app_id.as_deref().unwrap_or_default(),
        secret,
        settings.meta.proof,
        settings.meta.graph_timeout,
    )
    .context("cannot build the HTTP client")
}

/// The engine, and (durable mode) its inbox.
pub struct Engine {
    pub router: Router,
    pub inbox: Option<Inbox>,
}

/// Starts the engine and fills its directory with every page that is not revoked. In durable mode, also
/// the inbox, with every pending event handed to the engine. In a cluster (`cluster` = what this node owns,
/// and how it wakes the owners of the rest), tenants run only for the Pages the node claims, Graph API calls
/// go through the gate, and the engine's writes are fenced; pending events are taken as Pages are claimed.
pub async fn start_engine(
    settings: &Settings,
    store: Store,
    keys: Arc<KeyRing>,
    graph: Arc<dyn GraphApi>,
    cluster: Option<(Arc<Owned>, Wakes)>,
    ai: Option<Arc<Ai>>,
) -> anyhow::Result<Engine> {
    // What a failed tenant held is handed over again once the Send API calls it had in flight are over
    // (each ends within the Graph timeout, and reports its mark itself).
    let owned = cluster.as_ref().map(|(owned, _)| owned.clone());
    // Which Pages this process runs: every one, or (a cluster node) the ones it claimed.
    let tenure: Arc<dyn Tenure> = match &owned {
        Some(owned) => owned.clone(),
        None => Arc::new(EveryPage),
    };
    let in_flight = Arc::new(InFlight::new(settings.engine.engine.send_drain + Duration::from_secs(1), tenure.clone()));
    let events = Arc::new(StoreEvents::new(store.clone(), in_flight.clone(), owned.clone()));
    let graph: Arc<dyn GraphApi> = match &owned {
        Some(owned) => Arc::new(GatedGraph::new(graph, owned.clone())),
        None => graph,
    };
    let deps = EngineDeps {
        source: Arc::new(StoreTenants::new(store.clone(), keys, settings.engine.clone(), ai)),
        graph,
        status: Arc::new(StoreStatus::new(store.clone())),
        events: events.clone(),
        tenure,
        settings: settings.engine.engine.clone(),
    };
    let router = Router::start(deps).await.context("cannot start the actor engine")?;
    let integrations = store.list_integrations().await.context("cannot read integrations")?;
    for i in integrations.iter().filter(|i| i.status != IntegrationStatus::Revoked) {
        router.register(i.page_id.clone(), i.instagram_account_id.clone(), i.client_slug.as_str());
    }
    tracing::info!(pages = router.known_pages(), "engine started");
    if settings.inbox.mode == InboxMode::Memory {
        return Ok(Engine { router, inbox: None });
    }
    let inbox = Inbox::start(
        store.clone(),
        router.clone(),
        in_flight,
        events,
        settings.inbox.commit_timeout,
        settings.inbox.commit_writers,
    );
    if let Some((owned, wakes)) = cluster {
        return Ok(Engine { router, inbox: Some(inbox.in_cluster(owned, wakes)) });
    }
    let handed = inbox.recover(Duration::ZERO, Duration::ZERO).await.context("cannot read the webhook inbox")?;
    if handed > 0 {
        tracing::info!(handed, "pending inbox events handed to the engine again");
    }
    Ok(Engine { router, inbox: Some(inbox) })
}

/// The server's periodic jobs, on the one timer idiom (see `background`).
fn background_jobs(settings: &Settings, r: &Running<'_>, metrics: &PrometheusHandle) -> Background {
    let Running { store, router, onboarding, inbox, cluster, throttle, .. } = *r;
    const HOURLY: Duration = Duration::from_secs(3600);
    let jobs = Background::new();
    let token_check = settings.oauth.token_check_interval;
    let onboarding = onboarding.clone();
    jobs.every(token_check, First::Now, move || {
        let onboarding = onboarding.clone();
        async move { onboarding.check_round(token_check).await }
    });
    let (s, r) = (store.clone(), router.clone());
    jobs.every(settings.oauth.reconcile_interval, First::Now, move || {
        let (store, router) = (s.clone(), r.clone());
        async move { reconcile(&store, &router).await }
    });
    // Pruning runs once per cluster: on the oldest live node (what it deletes, it deletes once).
    let (s, retention, c) = (store.clone(), settings.inbox.retention, cluster.cloned());
    jobs.every(HOURLY, First::Now, move || {
        let (store, cluster) = (s.clone(), c.clone());
        async move {
            if cluster.as_ref().is_none_or(Cluster::is_leader) {
                crate::inbox::prune_logged(&store, retention).await;
                History::prune(&store).await;
                crate::onboarding::prune_states(&store).await;
                if cluster.is_some() {
                    let _ = store.prune_nodes().await;
                }
            }
        }
    });
    // Throttle counters of windows that ended count nothing: forgotten every minute, once per cluster.
    let (t, c) = (throttle.clone(), cluster.cloned());
    jobs.every(Duration::from_secs(60), First::AfterPeriod, move || {
        let (throttle, cluster) = (t.clone(), c.clone());
        async move {
            if cluster.as_ref().is_none_or(Cluster::is_leader)
                && let Err(e) = throttle.prune().await
            {
                tracing::warn!(error = %e, "cannot prune throttle counters; will try again");
            }
        }
    });
    if let Some(inbox) = inbox {
        let (every, stale, i) = (settings.inbox.sweep_interval, settings.inbox.stale_after, inbox.clone());
        jobs.every(every, First::AfterPeriod, move || {
            let inbox = i.clone();
            async move { inbox.sweep(every, stale).await }
        });
        // Pages that stop making progress are seen, named and (where the cause is Switchboard's own) healed;
        // on every node for the Pages it runs, and on the leader for the Pages nobody may run any more.
        let watchdog =
            Arc::new(Watchdog::new(inbox.clone(), settings.inbox.stuck_after, settings.cluster.node_name.clone()));
        let c = cluster.cloned();
        jobs.every(watchdog.period(), First::Now, move || {
            let (watchdog, cluster) = (watchdog.clone(), c.clone());
            async move { watchdog.check(cluster.as_ref().is_none_or(Cluster::is_leader)).await }
        });
    }
    // Each Page's figures over time, for the portal's charts: every node writes the Pages it runs.
    let history =
        Arc::new(History::new(store.clone(), router.clone(), cluster.map(|c| c.owned().clone()), inbox.is_some()));
    jobs.every(crate::history::EVERY, First::AfterPeriod, move || {
        let history = history.clone();
        async move { history.write().await }
    });
    // Whether the database answers, for operators (readiness answers the load balancer).
    let s = store.clone();
    jobs.every(Duration::from_secs(5), First::Now, move || {
        let store = s.clone();
        async move {
            let up = tokio::time::timeout(Duration::from_secs(4), store.ping()).await.is_ok_and(|r| r.is_ok());
            metrics::gauge!(crate::telemetry::catalog::DATABASE_UP).set(if up { 1.0 } else { 0.0 });
        }
    });
    // Keeps the histograms' windows rolling while nobody scrapes.
    let metrics = metrics.clone();
    jobs.every(Duration::from_secs(5), First::AfterPeriod, move || {
        metrics.run_upkeep();
        std::future::ready(())
    });
    jobs
}

/// The process-wide Prometheus recorder (installed once; later calls share it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(switchboard_actors::telemetry::metrics::SEND_LATENCY.to_owned()),
                    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(switchboard_actors::telemetry::metrics::WEBHOOK_REPLY.to_owned()),
                        &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(crate::inbox::WRITE_SECONDS.to_owned()),
                        &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(crate::adapters::ai::LATENCY.to_owned()),
                        &[0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0],
                    )
                })
                .expect("bucket list is not empty");
            match builder.install_recorder() {
                Ok(handle) => handle,
                // Another recorder is installed (only in tests that set their own): export an empty one.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            }
        })
        .clone()
}

/// Resolves on Ctrl-C (SIGINT) or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: a SIGTERM that arrives as soon as the server answers its first request is a shutdown,
/// never the default disposition that kills the process.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        [SignalKind::terminate(), SignalKind::interrupt()].map(|kind| signal(kind).ok())
    };
    async move {
        #[cfg(unix)]
        {
            let [term, int] = signals;
            let wait = |sig: Option<tokio::signal::unix::Signal>| async move {
                match sig {
                    Some(mut sig) => {
                        sig.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(term) => {}
                () = wait(int) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received");
    }
}
