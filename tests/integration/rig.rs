//! `Rig`: a database with the two seeded tenants and the Meta stand-in, for tests that run the real
//! `switchboard serve` binary against them.

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use meta_sim::{SimConfig, SimHandle};

use crate::app::{REDIRECT, SECRET, VERIFY_TOKEN, seed_tenants};
use crate::support::{Server, TestDb, eventually_within, key_entry, ring};

/// How long anything may take to settle before the test fails.
pub const SETTLE: Duration = Duration::from_secs(90);

/// A database with the two seeded tenants, and the stand-in.
pub struct Rig {
    pub db: TestDb,
    pub meta: SimHandle,
    pub key_entry: String,
    pub http: reqwest::Client,
}

impl Rig {
    pub async fn new(db: TestDb) -> Self {
        Self::with_sim(db, SimConfig::default()).await
    }

    /// A rig whose stand-in runs with `sim` (its rate limit, say).
    pub async fn with_sim(db: TestDb, sim: SimConfig) -> Self {
        let rig = Self::bare(db, sim).await;
        seed_tenants(&rig.db.store, &ring(&rig.key_entry), &rig.meta).await;
        rig
    }

    /// A rig whose clients have connected nothing yet.
    pub async fn bare(db: TestDb, sim: SimConfig) -> Self {
        let meta = meta_sim::spawn(SimConfig { redirect_uris: vec![REDIRECT.to_owned()], ..sim }).await.unwrap();
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
        Self { db, meta, key_entry: key_entry("k1"), http }
    }

    /// `switchboard serve` on this database and stand-in (durable inbox, the default).
    pub fn serve(&self) -> Server {
        self.serve_with(&[])
    }

    /// `serve`, with more environment variables.
    pub fn serve_with(&self, env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.env_clear().envs([
            ("DATABASE_URL", self.db.url.as_str()),
            ("SWITCHBOARD_ENCRYPTION_KEYS", self.key_entry.as_str()),
            ("META_APP_ID", "1234567890"),
            ("META_APP_SECRET", SECRET),
            ("META_VERIFY_TOKEN", VERIFY_TOKEN),
            ("META_GRAPH_URL", &self.meta.url()),
            ("META_OAUTH_DIALOG_URL", &self.meta.url()),
            ("SWITCHBOARD__ENGINE__SEND_RATE_PER_PAGE", "400"),
            ("SWITCHBOARD__INBOX__SWEEP_INTERVAL_SECS", "3"),
            ("SWITCHBOARD_LOG", "info"),
        ]);
        cmd.envs(env.iter().copied());
        Server::start(cmd).unwrap()
    }

    /// Posts a signed webhook `body` to `server`, as Meta does; the status.
    pub async fn deliver(&self, server: &Server, body: Vec<u8>) -> u16 {
        self.http
            .post(server.url("/api/facebook-webhook"))
            .header("x-hub-signature-256", meta_sim::webhook::signature(SECRET, &body))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// Replies the stand-in accepted, per event index.
    pub fn replies(&self) -> HashMap<usize, Vec<meta_sim::SentMessage>> {
        crate::support::replies::by_event(self.meta.sim().messages())
    }

    /// The replies the stand-in accepted, once no new one has arrived for half a second.
    pub async fn settled_replies(&self) -> HashMap<usize, Vec<meta_sim::SentMessage>> {
        let quiet = self.meta.sim().until_quiet(Duration::from_millis(500), SETTLE).await;
        assert!(quiet.is_ok(), "the stand-in kept accepting replies from a dead process");
        self.replies()
    }

    /// Waits until every event in `0..n` has a reply and no inbox row is pending.
    pub async fn wait_until_answered(&self, n: usize) -> HashMap<usize, Vec<meta_sim::SentMessage>> {
        eventually_within(SETTLE, &format!("{n} events answered, none pending"), || async {
            let replies = self.replies();
            let pending = self.db.store.inbox_counts().await.unwrap().into_iter().any(|(s, _)| s == "pending");
            if replies.len() >= n && !pending {
                Ok(replies)
            } else {
                Err(format!("{} answered, pending rows: {pending}", replies.len()))
            }
        })
        .await
    }
}
