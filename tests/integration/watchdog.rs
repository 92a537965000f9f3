//! The stuck-Page watchdog, through the real binary: a Page whose pending events nobody hands over is found
//! stuck, named and healed within `inbox.stuck_after_secs`; a Page Meta throttles is found stuck, named, and
//! left alone (never retried faster).

use std::time::Duration;

use crate::app::{PAGE_A, text_event};
use crate::rig::Rig;
use crate::support::{Server, TestDb, eventually_within};

/// A server whose sweeper would not come by for an hour, and whose watchdog calls a Page stuck after 2 s.
fn watched(rig: &Rig) -> Server {
    rig.serve_with(&[
        ("SWITCHBOARD__INBOX__SWEEP_INTERVAL_SECS", "3600"),
        ("SWITCHBOARD__INBOX__STALE_AFTER_SECS", "7200"),
        ("SWITCHBOARD__INBOX__STUCK_AFTER_SECS", "2"),
    ])
}

/// The value of the series `name` (labels included, as Prometheus renders them) on `server`'s `/metrics`.
async fn metric(rig: &Rig, server: &Server, series: &str) -> Option<f64> {
    let text = rig.http.get(server.metrics_url()).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// `switchboard inbox stats` on the rig's database.
fn inbox_stats(rig: &Rig) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["inbox", "stats"])
        .env_clear()
        .env("DATABASE_URL", &rig.db.url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_whose_pending_events_no_tenant_holds_is_found_stuck_named_and_healed() {
    let rig = Rig::new(TestDb::postgres().await).await;
    let server = watched(&rig);
    // A commit that went through after its webhook was answered 503: the event is pending, and nothing in the
    // engine holds it (the sweeper, the usual backstop, is an hour away).
    let event =
        switchboard::meta::webhook::parse(&text_event(PAGE_A, "7000000001", "m_stuck", "hi", 1_700_000_000_000))
            .unwrap()
            .events
            .remove(0);
    let row = switchboard::inbox::row(&event, &crate::support::page(PAGE_A), true).unwrap();
    rig.db.store.inbox_insert(&[row]).await.unwrap();

    let answered = eventually_within(Duration::from_secs(20), "the stuck Page healed and answered", || async {
        let sent = rig.meta.sim().messages();
        if sent.iter().any(|m| m.recipient_id == "7000000001") { Ok(()) } else { Err("not answered".to_owned()) }
    });
    answered.await;
    let warned = server.logged("a Page is stuck");
    assert!(warned.iter().any(|l| l.contains(PAGE_A) && l.contains("no_tenant") && l.contains("WARN")), "{warned:?}");
    let heals = metric(&rig, &server, "switchboard_stuck_page_heals_total{reason=\"no_tenant\"}").await;
    assert!(heals.is_some_and(|n| n >= 1.0), "heals counted: {heals:?}");
    eventually_within(Duration::from_secs(10), "nothing pending and nothing stuck", || async {
        let stats = inbox_stats(&rig);
        if stats.contains("done") && !stats.contains("pending") && !stats.contains("stuck Pages") {
            Ok(())
        } else {
            Err(stats)
        }
    })
    .await;
    server.stop_cleanly();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_meta_throttles_is_shown_stuck_with_the_reason_and_not_retried_faster() {
    let rig = Rig::new(TestDb::postgres().await).await;
    rig.meta.sim().throttle(PAGE_A, 600, 80006);
    let server = watched(&rig);
    // The series an alert needs exist from the start, zero while that is the truth.
    eventually_within(Duration::from_secs(5), "stuck Pages exported from the start", || async {
        match metric(&rig, &server, "switchboard_stuck_pages{reason=\"throttled\"}").await {
            Some(0.0) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let body = text_event(PAGE_A, "7000000002", "m_throttled", "hi", 1_700_000_000_000);
    assert_eq!(rig.deliver(&server, body).await, 200);

    let stats = eventually_within(Duration::from_secs(20), "the throttled Page shown stuck", || async {
        let stats = inbox_stats(&rig);
        if stats.contains("stuck Pages") && stats.contains(PAGE_A) && stats.contains("throttled") {
            Ok(stats)
        } else {
            Err(stats)
        }
    })
    .await;
    assert!(stats.contains("Meta is throttling it until"), "{stats}");
    assert!(stats.contains("oldest pending event: waiting for"), "{stats}");
    assert_eq!(metric(&rig, &server, "switchboard_stuck_pages{reason=\"throttled\"}").await, Some(1.0));
    let oldest = metric(&rig, &server, "switchboard_inbox_oldest_pending_seconds").await;
    assert!(oldest.is_some_and(|s| s >= 2.0), "oldest pending age exported: {oldest:?}");
    let warned = server.logged("a Page is stuck");
    assert!(warned.iter().any(|l| l.contains("throttled") && l.contains("healed=false")), "{warned:?}");
    // Shown, not healed: Meta was asked once, and the tenant waits for the regain time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let calls = rig.meta.sim().calls().iter().filter(|c| c.page_id.as_deref() == Some(PAGE_A)).count();
    assert_eq!(calls, 1, "a throttled Page is not retried faster");
    assert_eq!(metric(&rig, &server, "switchboard_stuck_page_heals_total{reason=\"throttled\"}").await, Some(0.0));
    server.stop_cleanly();
}
