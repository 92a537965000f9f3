//! Memory per tenant: resident set size (from /proc/self/statm) with N connected tenants, first idle (only
//! in the router's directory, as a passivated tenant is) and then active (one running actor each, with
//! its decrypted token, limiter, dedup memory and metrics handles). `cargo bench --bench tenant_memory`
//! (TENANTS=10000,100000 by default).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_actors::{
    AccessToken, Channel, EngineDeps, EngineSettings, EventKind, GraphApi, GraphFailure, InboundEvent, LoadError,
    NoInbox, OutgoingMessage, PageId, Responder, Router, RulesResponder, SendOk, StatusSink, TenantProfile,
    TenantSource,
};

struct Fake {
    responder: Arc<dyn Responder>,
}

#[async_trait]
impl TenantSource for Fake {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        Ok(TenantProfile {
            client_slug: Arc::from("bench"),
            page_id: page.clone(),
            instagram_account_id: None,
            token: Some(AccessToken::new(format!("EAAG{}{}", page, "x".repeat(180)))),
            blocked: None,
            responder: self.responder.clone(),
            send_rate_per_second: 80,
            human_pause: std::time::Duration::from_secs(1800),
            held: Vec::new(),
            ask_for_person: Default::default(),
        })
    }
}

#[async_trait]
impl GraphApi for Fake {
    async fn send_message(&self, _: &AccessToken, _: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        Ok(SendOk { message_id: "m".to_owned(), usage: None })
    }
}

#[async_trait]
impl StatusSink for Fake {
    async fn needs_reauth(&self, _: &PageId, _: &str) {}
    async fn permission_error(&self, _: &PageId, _: &str) {}
    async fn person_handling(&self, _: &PageId, _: &str, _: i64) {}
    async fn bot_handling(&self, _: &PageId, _: &str) {}
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

async fn settle() {
    tokio::time::sleep(Duration::from_millis(500)).await;
}

fn main() {
    let counts: Vec<usize> = std::env::var("TENANTS")
        .unwrap_or_else(|_| "10000,100000".to_owned())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    println!(
        "\nmemory per tenant (resident set size deltas; glibc malloc, {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!(
        "{:>8} {:>16} {:>16} {:>16} {:>16}",
        "tenants", "idle total", "idle / tenant", "active total", "active / tenant"
    );
    for n in counts {
        rt.block_on(async {
            let fake = Arc::new(Fake { responder: Arc::new(RulesResponder::new(Default::default(), "ok".to_owned())) });
            let router = Router::start(EngineDeps {
                source: fake.clone(),
                graph: fake.clone(),
                status: fake.clone(),
                events: Arc::new(NoInbox),
                tenure: Arc::new(switchboard_actors::EveryPage),
                settings: EngineSettings { idle_timeout: Duration::from_secs(3600), ..EngineSettings::default() },
            })
            .await
            .expect("engine");
            settle().await;
            let before = rss_bytes();
            for i in 0..n {
                router.register(
                    PageId::parse(&format!("{}", 100_000_000_000_000u64 + i as u64)).expect("page"),
                    None,
                    "bench",
                );
            }
            settle().await;
            let idle = rss_bytes().saturating_sub(before);
            for i in 0..n {
                let page = PageId::parse(&format!("{}", 100_000_000_000_000u64 + i as u64)).expect("page");
                router.dispatch(InboundEvent {
                    inbox_id: None,
                    recovered: false,
                    received: None,
                    account_id: page.clone(),
                    channel: Channel::Messenger,
                    sender: format!("7{i:015}"),
                    recipient: page.to_string(),
                    timestamp: 1,
                    standby: false,
                    kind: EventKind::Read,
                });
            }
            let started = std::time::Instant::now();
            while router.active_tenants() < n && started.elapsed() < Duration::from_secs(120) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            settle().await;
            let active = rss_bytes().saturating_sub(before);
            println!(
                "{:>8} {:>14} K {:>14} B {:>14} K {:>14} B",
                n,
                idle / 1024,
                idle / n as u64,
                active / 1024,
                active / n as u64
            );
            router.shutdown().await;
        });
    }
}
