//! The durable inbox (`inbox.mode = "durable"`): a 200 means committed; a failed commit is a 503 and
//! nothing is processed; redeliveries are stored and answered once; pending events survive a restart.

use std::time::Duration;

use switchboard::config::InboxMode;
use switchboard::store::{InboxId, InboxRow, NewReply, Outcome};

use crate::app::{Options, PAGE_A, TestApp, fixture, spawn_app, text_event};
use crate::support::eventually;

async fn durable() -> TestApp {
    spawn_app(Options::with(|s| s.inbox.mode = InboxMode::Durable)).await
}

/// Stores a pending inbox row for a text event to page A, as a commit does, without handing it to the
/// engine; returns its id.
async fn store_pending(app: &TestApp, sender: &str, mid: &str, text: &str, timestamp: i64) -> InboxId {
    let event =
        switchboard::meta::webhook::parse(&text_event(PAGE_A, sender, mid, text, timestamp)).unwrap().events.remove(0);
    let row = switchboard::inbox::row(&event, &crate::support::page(PAGE_A), true).unwrap();
    app.db.store.inbox_insert(&[row]).await.unwrap()[0].unwrap()
}

async fn wait_for_counts(app: &TestApp, expected: &[(&str, i64)]) {
    eventually(&format!("inbox counts {expected:?}"), || async {
        let counts = app.db.store.inbox_counts().await.unwrap();
        let got: Vec<(&str, i64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        if got == expected { Ok(()) } else { Err(format!("counts are {got:?}")) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_means_the_event_is_committed_and_it_is_marked_done_once_answered() {
    let app = durable().await;
    assert_eq!(app.post_webhook(&fixture("messenger_text.json")).await.0, 200);
    assert_eq!(app.db.count("webhook_inbox").await, 1, "committed before the 200");
    let sent = app.wait_for_sent(1).await;
    wait_for_counts(&app, &[("done", 1)]).await;
    assert_eq!(
        app.db.scalar("SELECT message_id FROM webhook_replies").await.as_deref(),
        Some(sent[0].message_id.as_str()),
        "the reply was recorded and Meta's message_id stored"
    );

    // Events that need no reply (the echo of the bot's own reply) are stored done by the commit itself;
    // unknown pages are not stored.
    let own = meta_sim::webhook::to_meta_json(&meta_sim::webhook::Envelope {
        object: "page",
        entry: vec![meta_sim::webhook::Entry {
            id: PAGE_A.to_owned(),
            time: 1,
            messaging: vec![meta_sim::webhook::echo(PAGE_A, "7001", 1, "m_own".into(), 1_234_567_890, "hello")],
        }],
    });
    assert_eq!(app.post_webhook(&own).await.0, 200);
    assert_eq!(app.db.store.inbox_counts().await.unwrap(), vec![("done".to_owned(), 2)]);
    assert_eq!(app.post_webhook(&text_event("555000111", "7001", "m_unknown", "hi", 1)).await.0, 200);
    assert_eq!(app.db.count("webhook_inbox").await, 2);
    // A person's answer in the Page Inbox (the fixture's echo names the inbox app) is for the tenant, which
    // finishes it.
    assert_eq!(app.post_webhook(&fixture("messenger_echo.json")).await.0, 200);
    wait_for_counts(&app, &[("done", 3)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_503_processes_nothing_and_the_retry_succeeds() {
    let app = durable().await;
    app.db.exec("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_away").await;
    let body = fixture("messenger_text.json");
    let (status, text) = app.post_webhook(&body).await;
    assert_eq!(status, 503, "{text}");
    app.db.exec("ALTER TABLE webhook_inbox_away RENAME TO webhook_inbox").await;
    assert!(app.settle().await.is_empty(), "nothing was processed");
    assert_eq!(app.post_webhook(&body).await.0, 200, "Meta's retry is accepted");
    assert_eq!(app.wait_for_sent(1).await.len(), 1);
    wait_for_counts(&app, &[("done", 1)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_copies_of_one_body_are_stored_once_and_answered_once() {
    let app = durable().await;
    let body = fixture("messenger_text.json");
    let signature = meta_sim::webhook::signature(crate::app::SECRET, &body);
    let mut posts = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let request = app
            .http
            .post(app.url("/api/facebook-webhook"))
            .header("x-hub-signature-256", signature.clone())
            .body(body.clone());
        posts.spawn(async move { request.send().await.unwrap().status().as_u16() });
    }
    let statuses = posts.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.db.count("webhook_inbox").await, 1);
    app.wait_for_sent(1).await;
    assert_eq!(app.settle().await.len(), 1, "one reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_are_handled_again_after_a_restart() {
    let app = durable().await;
    // A row committed (and acknowledged) just before a crash: pending, never handled.
    store_pending(&app, "7009", "m_crashed", "still there?", 5).await;
    // What start-up does.
    assert_eq!(app.inbox.as_ref().unwrap().recover(Duration::ZERO, Duration::ZERO).await.unwrap(), 1);
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].recipient_id, "7009");
    wait_for_counts(&app, &[("done", 1)]).await;
    assert_eq!(
        app.inbox.as_ref().unwrap().recover(Duration::ZERO, Duration::ZERO).await.unwrap(),
        0,
        "nothing is handed over twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovered_event_sends_only_the_recorded_replies_meta_did_not_confirm() {
    let app = durable().await;
    // Before a crash: the event was committed, its two replies recorded, and Meta confirmed the first.
    let inbox_id = store_pending(&app, "7010", "m_half", "hello", 5).await;
    let reply = |seq: i32, text: &str| NewReply {
        inbox_id,
        seq,
        text: text.to_owned(),
        recipient: "7010".to_owned(),
        fence: None,
        attempting: false,
    };
    let recorded = app.db.store.replies_record(&[reply(0, "first part"), reply(1, "second part")]).await.unwrap();
    app.db.store.inbox_progress(&[(recorded[0].id, Some("m_before_crash".to_owned()))], &[]).await.unwrap();

    assert_eq!(app.inbox.as_ref().unwrap().recover(Duration::ZERO, Duration::ZERO).await.unwrap(), 1);
    app.wait_for_sent(1).await;
    let sent = app.settle().await;
    assert_eq!(sent.len(), 1, "the confirmed reply is not sent again: {sent:?}");
    assert_eq!(
        (sent[0].recipient_id.as_str(), sent[0].text.as_deref()),
        ("7010", Some("second part")),
        "the recorded text is sent, the bot is not asked again"
    );
    wait_for_counts(&app, &[("done", 1)]).await;
    assert_eq!(
        app.db.scalar("SELECT message_id FROM webhook_replies WHERE seq = 1").await.as_deref(),
        Some(sent[0].message_id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweeper_hands_over_pending_rows_the_engine_does_not_hold_without_a_restart() {
    let app = spawn_app(Options::with(|s| {
        s.inbox.sweep_interval = Duration::from_secs(1);
        s.inbox.stale_after = Duration::from_secs(60);
    }))
    .await;
    // A commit that went through after its webhook was answered 503 (or a dead letter replayed from the
    // CLI): pending, and no part of the engine holds it.
    store_pending(&app, "7011", "m_late_commit", "anyone?", 5).await;
    let sent = app.wait_for_sent(1).await;
    assert_eq!(sent[0].recipient_id, "7011");
    wait_for_counts(&app, &[("done", 1)]).await;

    // An event the engine holds is not handed over twice, however many sweeps pass while it waits.
    app.meta.sim().set_faults(meta_sim::Faults { latency_ms: 3500, ..meta_sim::Faults::default() });
    assert_eq!(app.post_webhook(&text_event(PAGE_A, "7012", "m_held", "wait", 6)).await.0, 200);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let sent = app.wait_for_sent(2).await;
    assert_eq!(sent.iter().filter(|m| m.recipient_id == "7012").count(), 1, "{sent:?}");
    assert_eq!(app.settle().await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_and_delivery_receipts_can_be_acknowledged_from_memory() {
    for (receipts, stored) in [(InboxMode::Durable, 3), (InboxMode::Memory, 1)] {
        let app = spawn_app(Options::with(move |s| s.inbox.receipts = receipts)).await;
        assert_eq!(app.post_webhook(&fixture("messenger_read_delivery.json")).await.0, 200);
        assert_eq!(app.post_webhook(&fixture("messenger_text.json")).await.0, 200);
        assert_eq!(app.db.count("webhook_inbox").await, stored, "receipts = {receipts:?}");
        app.wait_for_sent(1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_inbox_counts_and_replay_dead_letters_from_the_cli() {
    use std::process::{Command, Stdio};

    let app = durable().await;
    let rows: Vec<InboxRow> = (0..3)
        .map(|i| InboxRow {
            page_id: crate::support::page(PAGE_A),
            dedup_key: format!("m:dead{i}"),
            event: "{}".to_owned(),
            customer_id: None,
            done: false,
        })
        .collect();
    let ids: Vec<InboxId> = app.db.store.inbox_insert(&rows).await.unwrap().into_iter().flatten().collect();
    app.db
        .store
        .inbox_finish(&ids.iter().map(|id| (*id, Outcome::Failed("Meta error 551".to_owned()))).collect::<Vec<_>>())
        .await
        .unwrap();
    let cli = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .env_clear()
            .env("DATABASE_URL", &app.db.url)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, out) = cli(&["inbox", "stats"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("failed   3"), "{out}");
    assert_eq!(cli(&["inbox", "replay", "--failed", "--client", "nobody"]).0, Some(2));
    let (code, out) = cli(&["inbox", "replay", "--failed", "--client", "woodstock-outlet"]);
    assert_eq!((code, out.starts_with("3 failed event(s) are pending again")), (Some(0), true), "{out}");
    let stats = cli(&["inbox", "stats"]).1;
    assert!(stats.starts_with("pending  3\noldest pending event: waiting for "), "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_a_failed_tenant_held_are_handed_over_soon_after_not_after_stale_after() {
    let app = spawn_app(Options::with(|s| {
        s.engine.send_rate_per_page = 1;
        s.inbox.sweep_interval = Duration::from_secs(1);
        s.inbox.stale_after = Duration::from_secs(3600);
    }))
    .await;
    // Six events for one page, paced at one a second: most are waiting in the tenant when it fails.
    for i in 0..6 {
        let body = text_event(PAGE_A, &format!("70{i}"), &format!("m_lost_{i}"), "hello", 10 + i as i64);
        assert_eq!(app.post_webhook(&body).await.0, 200);
    }
    app.wait_for_sent(1).await;
    app.router.crash(&switchboard_actors::PageId::parse(PAGE_A).unwrap());
    let at_crash = app.sent().len();
    assert!(at_crash < 6, "events were still waiting in the tenant when it failed");

    // What the failed tenant held died with its mailbox. Once its Send API calls in flight are over (the
    // Graph timeout, 10 s) the sweeper hands it over again, not after stale_after_secs (an hour).
    let sent = app.wait_for_sent_within(6, Duration::from_secs(45)).await;
    for i in 0..6 {
        let to = format!("70{i}");
        assert_eq!(sent.iter().filter(|m| m.recipient_id == to).count(), 1, "event {i} answered once: {sent:?}");
    }
    wait_for_counts(&app, &[("done", 6)]).await;
    assert_eq!(app.sent().len(), 6, "nothing sent twice");
}
