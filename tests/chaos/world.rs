//! The world a chaos run acts on: a PostgreSQL server of its own, the Meta stand-in, two clients with two Pages
//! each, and the cluster's `switchboard serve` nodes, each of which can be killed, paused, stopped and started
//! again. Everything listens on 127.0.0.1 only.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use meta_sim::{SimConfig, SimHandle, SimPage, SimUser};
use switchboard::store::Store;

use crate::processes::{PrivatePg, Server};

pub const SECRET: &str = "fixture-app-secret-do-not-use";
pub const APP_ID: &str = "1234567890";
/// What every node calls itself publicly: one address, as behind a load balancer. Facebook's dialog redirects
/// there, and the run plays the balancer (it sends the callback to a node of its choosing).
pub const PUBLIC_URL: &str = "http://127.0.0.1:1";
/// The lease every node holds: short, so failover is quick to see.
pub const LEASE_TTL: Duration = Duration::from_secs(2);
/// Meta's per-Page limit in the stand-in; every send rate the run sets stays under it.
pub const META_RATE: u32 = 500;

/// The Pages, and the client each is connected to.
pub const PAGES: [(&str, &str); 4] = [
    ("104711112233445", "woodstock-outlet"),
    ("209822223344556", "rural-king"),
    ("318933334455667", "woodstock-outlet"),
    ("427044445566778", "rural-king"),
];

pub struct World {
    pub pg: PrivatePg,
    pub db_url: String,
    pub store: Store,
    pub meta: SimHandle,
    key_entry: String,
    /// By name (`n1`, `n2`, …): the running node, if it runs.
    pub nodes: Vec<(String, Option<Server>)>,
    /// When a paused node was resumed (unix µs), and which.
    pub resumed: Vec<(i64, usize)>,
    /// What nodes logged before they were killed or stopped.
    pub old_logs: Vec<String>,
}

impl World {
    pub async fn new(nodes: usize) -> Self {
        let pg = PrivatePg::start();
        let admin = pg.url();
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&admin).await.expect("the run's PostgreSQL");
        sqlx::query("CREATE DATABASE chaos").execute(&mut conn).await.expect("CREATE DATABASE");
        let db_url = format!("postgres://postgres@127.0.0.1:{}/chaos", pg.port);
        let store = switchboard::store::connect(&db_url, 4).await.expect("the chaos database");
        store.migrate().await.expect("migrations");
        for (name, slug) in [("Woodstock Outlet", "woodstock-outlet"), ("Rural King", "rural-king")] {
            store.create_client(name, &switchboard::domain::ClientSlug::parse(slug).unwrap()).await.unwrap();
        }
        let meta = meta_sim::spawn(sim_config()).await.expect("the stand-in");
        let key = base64_key();
        let nodes = (1..=nodes).map(|i| (format!("n{i}"), None)).collect();
        let mut world = Self {
            pg,
            db_url,
            store,
            meta,
            key_entry: format!("k1:{key}"),
            nodes,
            resumed: Vec::new(),
            old_logs: Vec::new(),
        };
        for i in 0..world.nodes.len() {
            world.start(i);
        }
        world
    }

    /// The environment of every `switchboard` process of the run (nodes and CLI).
    fn env(&self, name: &str) -> Vec<(&'static str, String)> {
        vec![
            // Each node's connections carry its name, so one node's can be cut (`pg_terminate_backend`).
            ("DATABASE_URL", format!("{}?application_name=chaos-{name}", self.db_url)),
            ("SWITCHBOARD_ENCRYPTION_KEYS", self.key_entry.clone()),
            ("META_APP_ID", APP_ID.to_owned()),
            ("META_APP_SECRET", SECRET.to_owned()),
            ("META_VERIFY_TOKEN", "chaos-verify".to_owned()),
            ("META_GRAPH_URL", self.meta.url()),
            ("META_OAUTH_DIALOG_URL", self.meta.url()),
            ("SWITCHBOARD_PUBLIC_URL", PUBLIC_URL.to_owned()),
            ("SWITCHBOARD_CLUSTER_MODE", "postgres".to_owned()),
            ("SWITCHBOARD__CLUSTER__LEASE_TTL_SECS", LEASE_TTL.as_secs().to_string()),
            ("SWITCHBOARD__CLUSTER__NODE_NAME", name.to_owned()),
            ("SWITCHBOARD__ENGINE__SEND_RATE_PER_PAGE", "400".to_owned()),
            ("SWITCHBOARD__INBOX__SWEEP_INTERVAL_SECS", "3".to_owned()),
            ("SWITCHBOARD__INBOX__STUCK_AFTER_SECS", "10".to_owned()),
            ("SWITCHBOARD__OAUTH__RECONCILE_INTERVAL_SECS", "2".to_owned()),
            ("SWITCHBOARD_LOG", "info".to_owned()),
        ]
    }

    /// Starts node `i` (again), under its name.
    pub fn start(&mut self, i: usize) {
        let name = self.nodes[i].0.clone();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear().envs(self.env(&name));
        let server = Server::start(cmd).unwrap_or_else(|e| panic!("node {name} did not start: {e}"));
        self.nodes[i].1 = Some(server);
    }

    /// Node `i`'s base URL, while it runs.
    pub fn url(&self, i: usize) -> Option<String> {
        self.nodes[i].1.as_ref().map(|s| s.url("").trim_end_matches('/').to_owned())
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(server) = self.nodes[i].1.take() {
            self.keep_log(i, &server);
            server.kill9();
        }
    }

    /// SIGTERM to node `i`, which must stop within its grace period.
    pub fn stop(&mut self, i: usize) -> Result<(), String> {
        let Some(server) = self.nodes[i].1.take() else { return Ok(()) };
        self.keep_log(i, &server);
        let status = server.terminate();
        if status.success() { Ok(()) } else { Err(format!("{} exited {status} on SIGTERM", self.nodes[i].0)) }
    }

    /// Sends `signal` (`STOP`, `CONT`) to node `i`.
    pub fn signal(&self, i: usize, signal: &str) {
        if let Some(server) = &self.nodes[i].1 {
            server.signal(signal);
        }
    }

    fn keep_log(&mut self, i: usize, server: &Server) {
        let name = &self.nodes[i].0;
        self.old_logs.extend(server.logged("").into_iter().map(|line| format!("{name} (earlier): {line}")));
    }

    /// Every line the nodes logged that contains `needle`, those of earlier incarnations included.
    pub fn logged(&self, needle: &str) -> Vec<String> {
        let mut lines: Vec<String> = self.old_logs.iter().filter(|l| l.contains(needle)).cloned().collect();
        for (name, server) in &self.nodes {
            if let Some(server) = server {
                lines.extend(server.logged(needle).into_iter().map(|line| format!("{name}: {line}")));
            }
        }
        lines
    }

    /// Terminates every PostgreSQL connection of the node `name` (its pool's and its LISTEN connection).
    pub async fn cut_connections(&self, name: &str) -> Result<u64, String> {
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&self.pg.url()).await.map_err(|e| e.to_string())?;
        let (cut,): (i64,) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
        )
        .bind(format!("chaos-{name}"))
        .fetch_one(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        Ok(cut as u64)
    }

    /// The nodes running now: (index, base URL).
    pub fn live(&self) -> Vec<(usize, String)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, (_, s))| s.as_ref().map(|s| (i, s.url("").trim_end_matches('/').to_owned())))
            .collect()
    }

    /// Runs the `switchboard` CLI with `args` (and `stdin`); its stdout, or why it failed.
    pub fn cli(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env_clear()
            .envs(self.env("cli"))
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!("switchboard {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
        }
    }

    /// Connects `pages` to `client` through Facebook Login, started and finished on the nodes `start` and
    /// `finish` (the balancer may send the callback anywhere): the client's onboarding link, the stand-in's
    /// consent page, the callback.
    pub async fn connect(&self, client: &str, pages: &[&str], start: &str, finish: &str) -> Result<(), String> {
        let link = self.cli(&["client", "onboard-link", client, "--ttl", "1h"])?;
        let link = link.trim().replace(PUBLIC_URL, start);
        // A browser of its own: the flow is bound to it by a cookie.
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let dialog = crate::login::begin(&browser, &link).await?;
        let callback = crate::login::decide(&browser, &dialog, pages, None, "continue").await?;
        let callback = callback.replace(PUBLIC_URL, finish);
        let resp = browser.get(&callback).send().await.map_err(|e| e.without_url().to_string())?;
        if resp.status().as_u16() != 302 {
            return Err(format!("the callback answered {}", resp.status()));
        }
        let result = resp.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned();
        let page = browser.get(format!("{finish}{result}")).send().await.map_err(|e| e.to_string())?;
        let html = page.text().await.map_err(|e| e.to_string())?;
        if html.contains("Your Facebook connection is set up") {
            Ok(())
        } else {
            Err(format!("the login did not connect {pages:?}: {}", html.chars().take(400).collect::<String>()))
        }
    }

    /// Replies the stand-in accepted, per event (senders are `7` and the event's number).
    pub fn replies(&self) -> HashMap<usize, Vec<meta_sim::SentMessage>> {
        crate::replies::by_event(self.meta.sim().messages())
    }
}

/// The stand-in: the run's redirect URI, Meta's per-Page rate, and one person managing all four Pages.
fn sim_config() -> SimConfig {
    let defaults = SimConfig::default();
    let template = defaults.users[0].pages[1].clone();
    let pages = PAGES
        .iter()
        .enumerate()
        .map(|(i, (id, _))| match defaults.users[0].pages.get(i) {
            Some(page) => page.clone(),
            None => SimPage { id: (*id).to_owned(), name: format!("Store {}", i + 1), ..template.clone() },
        })
        .collect();
    SimConfig {
        redirect_uris: vec![format!("{PUBLIC_URL}/api/auth/facebook/callback")],
        rate_limit_per_page: META_RATE,
        users: vec![SimUser { pages, ..defaults.users[0].clone() }],
        ..defaults
    }
}

fn base64_key() -> String {
    use base64::Engine as _;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).expect("random bytes");
    base64::engine::general_purpose::STANDARD.encode(key)
}
