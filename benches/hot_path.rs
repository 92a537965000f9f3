//! Micro-benchmarks of the per-event work: the webhook hot path (signature check + parse + route), the
//! vault (seal/open a token), and the send limiter's check. Figures are relative: compare runs of the same
//! machine, e.g. `cargo bench --bench hot_path -- --save-baseline before` then `--baseline before`.

use std::hint::black_box;
use std::sync::Arc;

use async_trait::async_trait;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use secrecy::SecretString;
use switchboard::domain::{AccessToken, PageId};
use switchboard::meta::webhook::{WebhookSecrets, parse};
use switchboard::secrets::vault::{self, KeyId, KeyRing};
use switchboard_actors::timing::limiter::SendLimiter;
use switchboard_actors::{
    EngineDeps, EngineSettings, GraphApi, GraphFailure, InboundEvent, LoadError, NoInbox, OutgoingMessage, Responder,
    Router, RulesResponder, SendOk, StatusSink, TenantProfile, TenantSource,
};

const SECRET: &str = "fixture-app-secret-do-not-use";

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).expect("fixture")
}

/// Ports that answer at once, so the benchmark measures Switchboard, not a network.
struct Instant;

#[async_trait]
impl TenantSource for Instant {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        Ok(TenantProfile {
            client_slug: Arc::from("bench"),
            page_id: page.clone(),
            instagram_account_id: None,
            token: Some(AccessToken::new("EAAbench".to_owned())),
            blocked: None,
            responder: Arc::new(RulesResponder::new(Default::default(), "ok".to_owned())) as Arc<dyn Responder>,
            send_rate_per_second: 1000,
            human_pause: std::time::Duration::from_secs(1800),
            held: Vec::new(),
            ask_for_person: Default::default(),
        })
    }
}

#[async_trait]
impl GraphApi for Instant {
    async fn send_message(&self, _: &AccessToken, _: &OutgoingMessage) -> Result<SendOk, GraphFailure> {
        Ok(SendOk { message_id: "m".to_owned(), usage: None })
    }
}

#[async_trait]
impl StatusSink for Instant {
    async fn needs_reauth(&self, _: &PageId, _: &str) {}
    async fn permission_error(&self, _: &PageId, _: &str) {}
    async fn person_handling(&self, _: &PageId, _: &str, _: i64) {}
    async fn bot_handling(&self, _: &PageId, _: &str) {}
}

fn webhook(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let router = runtime.block_on(async {
        let deps = EngineDeps {
            source: Arc::new(Instant),
            graph: Arc::new(Instant),
            status: Arc::new(Instant),
            events: Arc::new(NoInbox),
            tenure: Arc::new(switchboard_actors::EveryPage),
            settings: EngineSettings::default(),
        };
        let router = Router::start(deps).await.expect("engine");
        router.register(PageId::parse("104711112233445").expect("page"), None, "bench");
        router.register(PageId::parse("209822223344556").expect("page"), None, "bench");
        router
    });
    let secrets = WebhookSecrets::new(&[SecretString::from(SECRET.to_owned())]);
    let mut group = c.benchmark_group("webhook");
    for name in ["messenger_text.json", "messenger_unicode.json", "messenger_batch_two_pages.json"] {
        let body = fixture(name);
        let signature = meta_sim::webhook::signature(SECRET, &body);
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("verify {name}"), |b| {
            b.iter(|| secrets.verify(Some(signature.as_bytes()), black_box(&body)).expect("valid"))
        });
        group.bench_function(format!("verify+parse {name}"), |b| {
            b.iter(|| {
                secrets.verify(Some(signature.as_bytes()), black_box(&body)).expect("valid");
                parse(&body).expect("parses")
            })
        });
        let _guard = runtime.enter();
        group.bench_function(format!("verify+parse+route {name}"), |b| {
            b.iter(|| {
                secrets.verify(Some(signature.as_bytes()), black_box(&body)).expect("valid");
                let events: Vec<InboundEvent> = parse(&body).expect("parses").events;
                for e in events {
                    router.dispatch(e);
                }
            })
        });
    }
    group.finish();
}

fn vault(c: &mut Criterion) {
    let entry = vault::generate_key_entry(&KeyId::parse("bench").expect("id"));
    let keys = KeyRing::parse(&entry).expect("ring");
    let page = PageId::parse("104711112233445").expect("page");
    let token = AccessToken::new("EAAG".to_owned() + &"x".repeat(200));
    let sealed = keys.seal(&page, &token).expect("seal");
    c.bench_function("vault seal", |b| b.iter(|| keys.seal(&page, black_box(&token)).expect("seal")));
    c.bench_function("vault open", |b| b.iter(|| keys.open(&page, black_box(&sealed)).expect("open")));
}

fn limiter(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let limiter = SendLimiter::new(1000);
    c.bench_function("limiter check", |b| b.iter(|| black_box(limiter.check())));
}

criterion_group!(benches, webhook, vault, limiter);
criterion_main!(benches);
