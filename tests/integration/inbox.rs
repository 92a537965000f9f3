//! The durable inbox (`inbox.mode = "durable"`): a 200 means committed; a failed commit is a 503 and
//! nothing is processed; redeliveries are stored and answered once; pending events survive a restart.

use std::time::Duration;

use switchboard::store::InboxRow;

use crate::app::{Options, PAGE_A, TestApp, fixture, spawn_app, text_event};

const WAIT: Duration = Duration::from_secs(10);

async fn durable() -> TestApp {
    spawn_app(Options { toml: "[inbox]\nmode = \"durable\"".to_owned(), ..Options::default() }).await
}

async fn wait_for_counts(app: &TestApp, expected: &[(&str, i64)]) {
    let started = std::time::Instant::now();
    loop {
        let counts = app.db.store.inbox_counts().await.unwrap();
        let got: Vec<(&str, i64)> = counts.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        if got == expected {
            return;
        }
        assert!(started.elapsed() < WAIT, "inbox counts {got:?}, expected {expected:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_means_the_event_is_committed_and_it_is_marked_done_once_answered() {
    let app = durable().await;
    assert_eq!(app.post_webhook(&fixture("messenger_text.json")).await.0, 200);
    assert_eq!(app.db.count("webhook_inbox").await, 1, "committed before the 200");
    app.wait_for_sent(1, WAIT).await;
    wait_for_counts(&app, &[("done", 1)]).await;

    // Events that need no reply are finished at once; unknown pages are not stored.
    assert_eq!(app.post_webhook(&fixture("messenger_echo.json")).await.0, 200);
    assert_eq!(app.post_webhook(&text_event("555000111", "7001", "m_unknown", "hi", 1)).await.0, 200);
    wait_for_counts(&app, &[("done", 2)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_503_processes_nothing_and_the_retry_succeeds() {
    let app = durable().await;
    app.db.exec("ALTER TABLE webhook_inbox RENAME TO webhook_inbox_away").await;
    let body = fixture("messenger_text.json");
    let (status, text) = app.post_webhook(&body).await;
    assert_eq!(status, 503, "{text}");
    assert!(app.settle().await.is_empty(), "nothing was processed");
    app.db.exec("ALTER TABLE webhook_inbox_away RENAME TO webhook_inbox").await;
    assert_eq!(app.post_webhook(&body).await.0, 200, "Meta's retry is accepted");
    assert_eq!(app.wait_for_sent(1, WAIT).await.len(), 1);
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
    app.wait_for_sent(1, WAIT).await;
    assert_eq!(app.settle().await.len(), 1, "one reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_events_are_handled_again_after_a_restart() {
    let app = durable().await;
    // A row committed (and acknowledged) just before a crash: pending, never handled.
    let body = text_event(PAGE_A, "7009", "m_crashed", "still there?", 5);
    let event = switchboard::webhook::parse(&body).unwrap().remove(0);
    let row = InboxRow {
        page_id: PAGE_A.to_owned(),
        dedup_key: event.dedup_key().unwrap(),
        event: serde_json::to_string(&event).unwrap(),
    };
    app.db.store.inbox_insert(&[row]).await.unwrap();
    // What start-up does.
    assert_eq!(switchboard::inbox::recover(app.db.store.as_ref(), &app.router).await.unwrap(), 1);
    let sent = app.wait_for_sent(1, WAIT).await;
    assert_eq!(sent[0].recipient_id, "7009");
    wait_for_counts(&app, &[("done", 1)]).await;
    assert_eq!(
        switchboard::inbox::recover(app.db.store.as_ref(), &app.router).await.unwrap(),
        0,
        "nothing is handed over twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_see_inbox_counts_and_replay_dead_letters_from_the_cli() {
    use std::process::{Command, Stdio};

    let app = durable().await;
    let rows: Vec<InboxRow> = (0..3)
        .map(|i| InboxRow { page_id: PAGE_A.to_owned(), dedup_key: format!("m:dead{i}"), event: "{}".to_owned() })
        .collect();
    let ids: Vec<i64> = app.db.store.inbox_insert(&rows).await.unwrap().into_iter().flatten().collect();
    app.db
        .store
        .inbox_finish(&ids.iter().map(|id| (*id, Some("Meta error 551".to_owned()))).collect::<Vec<_>>())
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
    assert_eq!(cli(&["inbox", "stats"]).1.trim(), "pending  3");
}
