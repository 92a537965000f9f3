//! The `Store` contract, run against both backends.

use switchboard::domain::{Actor, AuditAction, ClientSlug, Email, Role};
use switchboard::store::{
    AuditEntry, InboxId, IntegrationStatus, NewOAuthState, NewUser, Outcome, ResponderSetting, StoreError, UnhandledRow,
};

use crate::support::{TestDb, client, key_entry, new_integration, on_both_backends, page, ring};

on_both_backends!(
    clients_are_created_listed_and_unique_by_slug,
    users_are_unique_by_email_and_client_users_need_a_client,
    reconnect_updates_the_row_in_place_and_clears_needs_reauth,
    page_owned_by_another_client_is_refused_and_left_untouched,
    revoked_page_may_be_connected_by_another_client,
    upsert_for_an_unknown_client_is_not_found,
    status_changes_record_reason_and_time,
    instagram_account_is_linked_to_one_page_only,
    audit_log_lists_newest_first,
    inbox_stores_each_key_once_per_page_and_tracks_status,
    outbox_keeps_the_first_recording_and_marks_replies_sent_once,
    a_reply_recorded_as_about_to_be_sent_is_of_unknown_outcome_until_it_is_marked_sent,
    pruning_removes_only_finished_rows_past_retention_with_their_replies,
    unhandled_parts_are_kept_once_summarized_listed_and_pruned,
    old_oauth_states_are_pruned_and_recent_ones_kept,
    rules_are_saved_as_versions_and_a_stale_save_is_refused,
    conversation_holds_only_grow_are_released_and_pruned,
    conversations_are_listed_by_latest_activity_and_paged_with_their_replies,
    stuck_pages_are_kept_per_check_and_cleared_once_nothing_is_pending,
    a_conversation_list_reads_a_bounded_window_and_pages_on_below_it,
    a_pages_history_adds_up_across_writers_reads_in_slots_and_is_pruned,
    an_ai_month_reserves_only_what_is_left_settles_with_usage_and_forgets_expired_reservations,
    racing_reservations_never_take_more_than_the_month_has_left,
    the_ai_responder_keeps_the_rules_and_its_budget_and_the_done_outcome_keeps_its_note,
);

/// A month's budget: reservations take what is left (never more), calls in flight count, usage settles, a
/// reservation past its expiry stops counting, and months and clients are apart.
async fn an_ai_month_reserves_only_what_is_left_settles_with_usage_and_forgets_expired_reservations(db: TestDb) {
    let store = &db.store;
    let (a, b) = (client(store, "a").await, client(store, "b").await);
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    let first = store.ai_reserve(a.id, "2026-12", 100, 60, later).await.unwrap().unwrap();
    assert_eq!(first.tokens, 60);
    let second = store.ai_reserve(a.id, "2026-12", 100, 60, later).await.unwrap().unwrap();
    assert_eq!(second.tokens, 40, "capped at what is left once the call in flight is counted");
    assert_eq!(store.ai_reserve(a.id, "2026-12", 100, 60, later).await.unwrap(), None, "nothing left");
    assert!(store.ai_reserve(a.id, "2027-01", 100, 60, later).await.unwrap().is_some(), "a new month starts afresh");
    assert!(store.ai_reserve(b.id, "2026-12", 100, 60, later).await.unwrap().is_some(), "clients are apart");
    // The first call used 70 (more than it reserved), the second 10.
    store.ai_settle(a.id, &first, 70, true).await.unwrap();
    store.ai_settle(a.id, &second, 10, true).await.unwrap();
    let month = store.ai_month(a.id, "2026-12").await.unwrap();
    assert_eq!((month.used_tokens, month.calls, month.reserved_tokens), (80, 2, 0));
    let last = store.ai_reserve(a.id, "2026-12", 100, 60, later).await.unwrap().unwrap();
    assert_eq!(last.tokens, 20);
    // A reservation whose node died stops counting once it expires.
    let gone = chrono::Utc::now() - chrono::Duration::seconds(1);
    store.ai_settle(a.id, &last, 0, false).await.unwrap();
    store.ai_reserve(a.id, "2026-12", 100, 20, gone).await.unwrap().unwrap();
    assert_eq!(store.ai_month(a.id, "2026-12").await.unwrap().reserved_tokens, 0);
    assert_eq!(store.ai_reserve(a.id, "2026-12", 100, 60, later).await.unwrap().unwrap().tokens, 20);
}

/// Many calls reserving at once (as nodes and Pages do) never take more than the month has: the month's row
/// is taken one at a time.
async fn racing_reservations_never_take_more_than_the_month_has_left(db: TestDb) {
    let store = &db.store;
    let c = client(store, "racer").await;
    let later = chrono::Utc::now() + chrono::Duration::minutes(5);
    let id = c.id;
    let calls: Vec<_> = (0..12)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move { store.ai_reserve(id, "2026-12", 100, 30, later).await })
        })
        .collect();
    let mut granted = Vec::new();
    for call in calls {
        if let Some(r) = call.await.unwrap().unwrap() {
            granted.push(r.tokens);
        }
    }
    assert_eq!(granted.iter().sum::<u64>(), 100, "exactly the budget, never more: {granted:?}");
    assert_eq!(granted.len(), 4, "30 + 30 + 30 + 10: {granted:?}");
}

/// Choosing AI answers keeps the rules (their fallback) and stores the knowledge and budget; choosing rules
/// again keeps the AI settings; a done event keeps how it was answered.
async fn the_ai_responder_keeps_the_rules_and_its_budget_and_the_done_outcome_keeps_its_note(db: TestDb) {
    use switchboard::store::AiSetting;
    let store = &db.store;
    let c = client(store, "c").await;
    let rules = r#"{"fallback":"rules"}"#.to_owned();
    store.set_responder(c.id, &ResponderSetting::Rules { rules_json: rules.clone() }).await.unwrap();
    let ai = AiSetting { knowledge: "Open 9 to 5.".into(), monthly_tokens: Some(5000), known_links_only: true };
    store.set_responder(c.id, &ResponderSetting::Ai(ai.clone())).await.unwrap();
    assert_eq!(store.client_settings(c.id).await.unwrap().unwrap().responder, ResponderSetting::Ai(ai.clone()));
    assert_eq!(store.client_rules_json(c.id).await.unwrap(), Some(rules.clone()));
    store.set_responder(c.id, &ResponderSetting::Rules { rules_json: rules.clone() }).await.unwrap();
    store.set_responder(c.id, &ResponderSetting::Ai(AiSetting { monthly_tokens: None, ..ai })).await.unwrap();
    let ResponderSetting::Ai(kept) = store.client_settings(c.id).await.unwrap().unwrap().responder else {
        panic!("ai expected")
    };
    assert_eq!(kept.monthly_tokens, None, "setting the AI answers again sets their budget (none: the default)");

    let ids: Vec<_> =
        store.inbox_insert(&[row("1", "a"), row("1", "b")]).await.unwrap().into_iter().flatten().collect();
    store
        .inbox_finish(&[
            (ids[0], Outcome::Done(Some("answered by the rules: the model timed out".into()))),
            (ids[1], Outcome::Failed("the bot failed".into())),
        ])
        .await
        .unwrap();
    let status = db.scalar(&format!("SELECT status || '|' || reason FROM webhook_inbox WHERE id = {}", ids[0].0)).await;
    assert_eq!(status.as_deref(), Some("done|answered by the rules: the model timed out"));
    let status = db.scalar(&format!("SELECT status || '|' || reason FROM webhook_inbox WHERE id = {}", ids[1].0)).await;
    assert_eq!(status.as_deref(), Some("failed|the bot failed"));
}

/// Two nodes writing the same Page's minute (a handover mid-minute) add up; slots sum minutes; the worst latency
/// and age are kept; old buckets are pruned.
async fn a_pages_history_adds_up_across_writers_reads_in_slots_and_is_pruned(db: TestDb) {
    use switchboard::store::HistoryAdd;
    let store = &db.store;
    let add = |page: &str, at: i64, events: i64, p95: Option<i64>, oldest: i64| HistoryAdd {
        page_id: page.into(),
        bucket_secs: 60,
        at,
        events,
        answers: events,
        failures: 1,
        reply_p95_ms: p95,
        oldest_pending_s: oldest,
    };
    store.history_add(&[add("1", 600, 3, Some(200), 5), add("2", 600, 9, None, 0)]).await.unwrap();
    // Another node claims page 1 within the same minute and adds what it counted.
    store.history_add(&[add("1", 600, 2, Some(900), 1), add("1", 660, 4, None, 0)]).await.unwrap();
    let slots = store.history(Some("1"), 60, 0, 900).await.unwrap();
    assert_eq!(slots.len(), 1, "both minutes fall in one 15-minute slot: {slots:?}");
    let s = &slots[0];
    assert_eq!((s.at, s.events, s.answers, s.failures), (0, 9, 9, 3));
    assert_eq!((s.reply_p95_ms, s.oldest_pending_s), (Some(900), 5), "the worst of each");
    assert_eq!(store.history(None, 60, 0, 60).await.unwrap().len(), 3, "per minute, every Page");
    assert!(store.history(None, 3600, 0, 3600).await.unwrap().is_empty(), "hours are their own buckets");
    assert_eq!(store.history_prune(60, 660).await.unwrap(), 2);
    assert_eq!(store.history(None, 60, 0, 60).await.unwrap().len(), 1);
}

/// A Page with a chatty customer: one page of its conversation list reads at most `CONVERSATION_WINDOW` of its
/// messages (not all of them), counts a conversation's messages up to `COUNTED_AT_MOST`, and the next page goes
/// on below the window, so no conversation is out of reach.
async fn a_conversation_list_reads_a_bounded_window_and_pages_on_below_it(db: TestDb) {
    use switchboard::store::{CONVERSATION_WINDOW, COUNTED_AT_MOST, InboxRow};
    let store = &db.store;
    let row = |customer: &str, n: i64| InboxRow {
        page_id: page("1"),
        dedup_key: format!("m:{customer}:{n}"),
        event: "{}".into(),
        customer_id: Some(customer.into()),
        done: true,
    };
    store.inbox_insert(&[row("900", 0)]).await.unwrap();
    let chatty: Vec<InboxRow> = (0..CONVERSATION_WINDOW).map(|n| row("901", n)).collect();
    for chunk in chatty.chunks(2_000) {
        store.inbox_insert(chunk).await.unwrap();
    }
    store.inbox_insert(&[row("902", 0)]).await.unwrap();

    let first = store.conversations("1", None, 21).await.unwrap();
    let listed: Vec<(&str, i64)> = first.conversations.iter().map(|c| (c.customer_id.as_str(), c.events)).collect();
    assert_eq!(listed, [("902", 1), ("901", COUNTED_AT_MOST)], "the window holds these two; the count is capped");
    let below = first.read_down_to.expect("the window was full: the list goes on below it");
    let next = store.conversations("1", Some(below), 21).await.unwrap();
    let listed: Vec<&str> = next.conversations.iter().map(|c| c.customer_id.as_str()).collect();
    assert_eq!(listed, ["900"], "below the window: the oldest conversation, and 901 not again");
    assert_eq!(next.read_down_to, None, "nothing more to read");
}

/// A pending inbox row of `page` with `key`, its event empty.
fn row(page: &str, key: &str) -> switchboard::store::InboxRow {
    switchboard::store::InboxRow {
        page_id: crate::support::page(page),
        dedup_key: key.into(),
        event: "{}".into(),
        customer_id: None,
        done: false,
    }
}

async fn stuck_pages_are_kept_per_check_and_cleared_once_nothing_is_pending(db: TestDb) {
    use switchboard::store::StuckPage;
    let store = &db.store;
    let ids = store.inbox_insert(&[row("1", "m:a"), row("2", "m:b")]).await.unwrap();
    let stuck = |page: &str, reason: &str| StuckPage {
        page_id: page.into(),
        reason: reason.into(),
        detail: format!("{reason} in words"),
        pending: 1,
        oldest_ms: 1_000,
        since_ms: 2_000,
        node: "n1".into(),
        checked_ms: 3_000,
    };
    store.stuck_pages_report(&[stuck("1", "no_tenant"), stuck("2", "throttled")], &[]).await.unwrap();
    assert_eq!(store.stuck_pages().await.unwrap(), [stuck("1", "no_tenant"), stuck("2", "throttled")]);
    // The next check: page 1 changed its reason, page 2 makes progress.
    store.stuck_pages_report(&[stuck("1", "not_progressing")], &["2"]).await.unwrap();
    assert_eq!(store.stuck_pages().await.unwrap(), [stuck("1", "not_progressing")]);
    // Page 1's event is finished: nothing pending, nothing stuck.
    store.inbox_finish(&[(ids[0].unwrap(), Outcome::DONE)]).await.unwrap();
    store.stuck_pages_report(&[], &[]).await.unwrap();
    assert!(store.stuck_pages().await.unwrap().is_empty());
    // A disconnected Page's leftovers are failed with the reason (those received before the time given).
    let now = switchboard::clock::now();
    assert_eq!(store.inbox_fail_pending_of("2", "gone", now - chrono::Duration::hours(1)).await.unwrap(), 0);
    assert_eq!(store.inbox_fail_pending_of("2", "the page was disconnected", now).await.unwrap(), 1);
    assert_eq!(store.inbox_counts().await.unwrap(), vec![("done".to_owned(), 1), ("failed".to_owned(), 1)]);
}

async fn conversations_are_listed_by_latest_activity_and_paged_with_their_replies(db: TestDb) {
    use switchboard::store::{InboxRow, NewReply};
    let store = &db.store;
    let row = |page: &str, key: &str, customer: Option<&str>| InboxRow {
        page_id: crate::support::page(page),
        dedup_key: key.into(),
        event: format!("{{\"key\":\"{key}\"}}"),
        customer_id: customer.map(str::to_owned),
        done: false,
    };
    let ids: Vec<InboxId> = store
        .inbox_insert(&[
            row("1", "a1", Some("701")),
            row("1", "b1", Some("702")),
            row("1", "a2", Some("701")),
            row("1", "receipt", None),
            row("1", "c1", Some("703")),
            row("2", "a1", Some("701")),
        ])
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .collect();
    let id = |n: usize| ids[n].0;
    let reply = |seq: i32, text: &str| NewReply {
        inbox_id: ids[0],
        seq,
        text: text.into(),
        recipient: "701".into(),
        fence: None,
        attempting: false,
    };
    let recorded = store.replies_record(&[reply(1, "second"), reply(0, "first")]).await.unwrap();
    let first = recorded.iter().find(|r| r.text == "first").unwrap().id;
    store
        .inbox_progress(&[(first, Some("m_1".into()))], &[(ids[1], Outcome::Failed("the bot failed: timeout".into()))])
        .await
        .unwrap();

    let listed = store.conversations("1", None, 2).await.unwrap().conversations;
    let summary: Vec<(&str, i64, i64)> = listed.iter().map(|c| (c.customer_id.as_str(), c.events, c.last.id)).collect();
    assert_eq!(summary, [("703", 1, id(4)), ("701", 2, id(2))], "newest activity first; receipts are no conversation");
    let rest = store.conversations("1", Some(id(2)), 2).await.unwrap().conversations;
    assert_eq!(rest.iter().map(|c| c.customer_id.as_str()).collect::<Vec<_>>(), ["702"]);
    assert_eq!(
        (rest[0].last.status.as_str(), rest[0].last.reason.as_deref()),
        ("failed", Some("the bot failed: timeout"))
    );
    assert_eq!(store.conversations("2", None, 10).await.unwrap().conversations.len(), 1, "each page its own");

    let talk = store.conversation("1", "701", None, 10).await.unwrap();
    assert_eq!(talk.iter().map(|e| e.id).collect::<Vec<_>>(), [id(2), id(0)], "newest first");
    let replies: Vec<(&str, bool)> =
        talk[1].replies.iter().map(|r| (r.body.as_str(), r.message_id.is_some() && r.sent_at.is_some())).collect();
    assert_eq!(replies, [("first", true), ("second", false)], "in order, with what was sent");
    assert!(talk[0].replies.is_empty() && talk[1].event.contains("a1"));
    let page: Vec<i64> = store.conversation("1", "701", None, 1).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(page, [id(2)]);
    let older: Vec<i64> = store.conversation("1", "701", Some(id(2)), 1).await.unwrap().iter().map(|e| e.id).collect();
    assert_eq!(older, [id(0)]);
    assert!(store.conversation("1", "709", None, 10).await.unwrap().is_empty());
}

async fn rules_are_saved_as_versions_and_a_stale_save_is_refused(db: TestDb) {
    let c = client(&db.store, "acme").await;
    assert!(matches!(db.store.save_rules(c.id, "{}", 3).await, Err(StoreError::Conflict(_))), "no version 3 yet");
    assert_eq!(db.store.save_rules(c.id, r#"{"fallback":"one"}"#, 0).await.unwrap(), 1);
    assert!(matches!(db.store.save_rules(c.id, "{}", 0).await, Err(StoreError::Conflict(_))), "stale");
    assert_eq!(db.store.save_rules(c.id, r#"{"fallback":"two"}"#, 1).await.unwrap(), 2);
    let settings = db.store.client_settings(c.id).await.unwrap().unwrap();
    assert_eq!(settings.rules_version, 2);
    assert!(matches!(settings.responder, ResponderSetting::Rules { rules_json } if rules_json.contains("two")));
    db.store.set_send_rate(c.id, Some(5)).await.unwrap();
    assert_eq!(db.store.client_settings(c.id).await.unwrap().unwrap().rules_version, 2, "other settings keep it");
}

async fn conversation_holds_only_grow_are_released_and_pruned(db: TestDb) {
    db.store.hold_conversation("1", "7001", 2_000).await.unwrap();
    db.store.hold_conversation("1", "7001", 1_500).await.unwrap();
    db.store.hold_conversation("1", "7002", 1_000).await.unwrap();
    db.store.hold_conversation("2", "7001", 9_000).await.unwrap();
    assert_eq!(db.store.conversation_holds("1", 0).await.unwrap(), [("7001".into(), 2_000), ("7002".into(), 1_000)]);
    assert_eq!(db.store.conversation_holds("1", 1_000).await.unwrap(), [("7001".into(), 2_000)], "running only");
    db.store.release_conversation("1", "7001").await.unwrap();
    assert_eq!(db.store.conversation_holds("1", 0).await.unwrap(), [("7002".into(), 1_000)]);
    assert_eq!(db.store.prune_conversation_holds(1_000).await.unwrap(), 1);
    assert_eq!(db.store.conversation_holds("2", 0).await.unwrap(), [("7001".into(), 9_000)], "other pages untouched");
}

async fn clients_are_created_listed_and_unique_by_slug(db: TestDb) {
    let store = &db.store;
    let wo = store.create_client("Woodstock Outlet", &ClientSlug::parse("woodstock-outlet").unwrap()).await.unwrap();
    let rk = store.create_client("Rural King", &ClientSlug::parse("rural-king").unwrap()).await.unwrap();
    assert_ne!(wo.id, rk.id);

    let listed = store.list_clients().await.unwrap();
    assert_eq!(listed, vec![rk.clone(), wo.clone()], "sorted by slug, timestamps round-trip exactly");
    assert_eq!(store.client_by_slug(&wo.slug).await.unwrap(), Some(wo));
    assert_eq!(store.client_by_slug(&ClientSlug::parse("nobody").unwrap()).await.unwrap(), None);

    let err = store.create_client("Another", &ClientSlug::parse("rural-king").unwrap()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("rural-king")), "{err}");
    assert_eq!(store.list_clients().await.unwrap().len(), 2, "the failed insert left nothing behind");
}

async fn users_are_unique_by_email_and_client_users_need_a_client(db: TestDb) {
    let store = &db.store;
    let acme = client(store, "acme").await;
    let user = NewUser {
        email: Email::parse("Owner@Acme.example").unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        role: Role::Client,
        client_id: Some(acme.id),
        must_change_password: false,
    };
    let created = store.create_user(&user).await.unwrap();
    assert_eq!(created.email.as_str(), "owner@acme.example");
    let found = store.user_by_email(&Email::parse("OWNER@acme.example").unwrap()).await.unwrap().unwrap();
    assert_eq!(found, created);

    let err = store.create_user(&user).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err}");

    let orphan = NewUser { email: Email::parse("x@acme.example").unwrap(), client_id: None, ..user.clone() };
    assert!(store.create_user(&orphan).await.is_err(), "a client user without a client violates the schema");
    let operator_with_client =
        NewUser { email: Email::parse("op@acme.example").unwrap(), role: Role::Operator, ..user };
    assert!(store.create_user(&operator_with_client).await.is_err());
}

async fn reconnect_updates_the_row_in_place_and_clears_needs_reauth(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let first = store.upsert_integration(&new_integration(&keys, &acme, "104711112233445", "token-one")).await.unwrap();
    assert_eq!(first.status, IntegrationStatus::Connected);
    assert_eq!(first.client_slug.as_str(), "acme");
    assert_eq!(first.client_name, "Client acme");
    assert_eq!(first.permissions_granted, vec!["pages_messaging", "pages_manage_metadata"]);
    assert_eq!(first.token_expires_at, None);

    let p = page("104711112233445");
    assert!(store.set_integration_status(&p, IntegrationStatus::NeedsReauth, Some("190/460"), None).await.unwrap());

    let mut again = new_integration(&keys, &acme, "104711112233445", "token-two");
    again.token_expires_at = Some(switchboard::clock::now() + chrono::Duration::days(60));
    again.permissions_granted.push("instagram_manage_messages".to_owned());
    let second = store.upsert_integration(&again).await.unwrap();
    assert_eq!(second.id, first.id, "a reconnect never duplicates the row");
    assert_eq!(second.status, IntegrationStatus::Connected);
    assert_eq!(second.status_reason, None);
    assert_eq!(second.token_expires_at, again.token_expires_at);
    assert_eq!(second.permissions_granted.len(), 3);
    assert_eq!(keys.open(&p, second.sealed_token.as_ref().unwrap()).unwrap().expose(), "token-two");
    assert_eq!(store.list_integrations().await.unwrap().len(), 1);
}

async fn page_owned_by_another_client_is_refused_and_left_untouched(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let owner = client(store, "owner").await;
    let intruder = client(store, "intruder").await;
    let original = store.upsert_integration(&new_integration(&keys, &owner, "555", "owner-token")).await.unwrap();

    let err = store.upsert_integration(&new_integration(&keys, &intruder, "555", "intruder-token")).await.unwrap_err();
    assert!(matches!(err, StoreError::PageOwnedByAnotherClient(ref p) if p.as_str() == "555"), "{err}");

    let after = store.integration_by_page(&page("555")).await.unwrap().unwrap();
    assert_eq!(after, original, "the owner's row is untouched");
    assert_eq!(keys.open(&page("555"), after.sealed_token.as_ref().unwrap()).unwrap().expose(), "owner-token");
}

async fn revoked_page_may_be_connected_by_another_client(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let old = client(store, "old-owner").await;
    let new = client(store, "new-owner").await;
    store.upsert_integration(&new_integration(&keys, &old, "777", "t1")).await.unwrap();
    store.set_integration_status(&page("777"), IntegrationStatus::Revoked, Some("disconnected"), None).await.unwrap();
    let taken = store.upsert_integration(&new_integration(&keys, &new, "777", "t2")).await.unwrap();
    assert_eq!(taken.client_id, new.id);
    assert_eq!(taken.client_slug.as_str(), "new-owner");
    assert_eq!(taken.status, IntegrationStatus::Connected);
}

async fn upsert_for_an_unknown_client_is_not_found(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let mut ghost = client(store, "real").await;
    ghost.id = switchboard::domain::ClientId(ghost.id.0 + 1000);
    let err = store.upsert_integration(&new_integration(&keys, &ghost, "888", "t")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.list_integrations().await.unwrap().is_empty());
}

async fn status_changes_record_reason_and_time(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let created = store.upsert_integration(&new_integration(&keys, &acme, "42", "t")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let entry = AuditEntry {
        actor: Actor::System,
        action: AuditAction::IntegrationError,
        client_id: Some(acme.id),
        page_id: Some(page("42")),
        detail: "permission 10".to_owned(),
    };
    assert!(
        store
            .set_integration_status(&page("42"), IntegrationStatus::Error, Some("permission 10"), Some(&entry))
            .await
            .unwrap()
    );
    assert_eq!(store.recent_audit(5).await.unwrap().len(), 1, "the audit row is written with the status");
    assert!(
        !store.set_integration_status(&page("404"), IntegrationStatus::Error, Some("x"), Some(&entry)).await.unwrap()
    );
    assert_eq!(store.recent_audit(5).await.unwrap().len(), 1, "no audit row for a page that does not exist");
    let changed = store.integration_by_page(&page("42")).await.unwrap().unwrap();
    assert_eq!(changed.status, IntegrationStatus::Error);
    assert_eq!(changed.status_reason.as_deref(), Some("permission 10"));
    assert!(changed.status_changed_at > created.status_changed_at);

    // Same status again: the reason updates, "since when" does not.
    store.set_integration_status(&page("42"), IntegrationStatus::Error, Some("permission 200"), None).await.unwrap();
    let same = store.integration_by_page(&page("42")).await.unwrap().unwrap();
    assert_eq!(same.status_changed_at, changed.status_changed_at);
    assert_eq!(same.status_reason.as_deref(), Some("permission 200"));

    assert!(!store.set_integration_status(&page("43"), IntegrationStatus::Error, None, None).await.unwrap());
}

async fn instagram_account_is_linked_to_one_page_only(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let mut a = new_integration(&keys, &acme, "1", "t");
    a.instagram_account_id = Some(page("17841405822304914"));
    let stored = store.upsert_integration(&a).await.unwrap();
    assert_eq!(stored.instagram_account_id, Some(page("17841405822304914")));
    let mut b = new_integration(&keys, &acme, "2", "t");
    b.instagram_account_id = Some(page("17841405822304914"));
    let err = store.upsert_integration(&b).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("Instagram")), "{err}");
}

async fn audit_log_lists_newest_first(db: TestDb) {
    let store = &db.store;
    let acme = client(store, "acme").await;
    for action in [AuditAction::ClientCreated, AuditAction::IntegrationConnected] {
        store
            .append_audit(&AuditEntry {
                actor: Actor::Cli,
                action,
                client_id: Some(acme.id),
                page_id: Some(page("104711112233445")),
                detail: "detail".to_owned(),
            })
            .await
            .unwrap();
    }
    let rows = store.recent_audit(10).await.unwrap();
    assert_eq!(rows.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(), ["integration.connected", "client.created"]);
    assert_eq!(rows[0].page_id.as_deref(), Some("104711112233445"));
    assert_eq!(rows[0].client_id, Some(acme.id));
    assert_eq!(store.recent_audit(1).await.unwrap().len(), 1);
}

async fn inbox_stores_each_key_once_per_page_and_tracks_status(db: TestDb) {
    use switchboard::store::InboxRow;
    let store = &db.store;
    let ids = store.inbox_insert(&[row("1", "m:a"), row("1", "m:b"), row("1", "m:a"), row("2", "m:a")]).await.unwrap();
    assert!(ids[0].is_some() && ids[1].is_some() && ids[3].is_some(), "{ids:?}");
    assert_eq!(ids[2], None, "a key repeated within one group is stored once");
    let again = store.inbox_insert(&[row("1", "m:a"), row("1", "m:c")]).await.unwrap();
    assert_eq!(again[0], None, "a key already stored is a redelivery");
    assert!(again[1].is_some());
    assert_eq!(store.inbox_insert(&[]).await.unwrap(), Vec::<Option<InboxId>>::new());

    let pending = store.inbox_pending(chrono::Utc::now(), 10).await.unwrap();
    let pages: Vec<&str> = pending.iter().map(|p| p.page.as_str()).collect();
    assert_eq!(pages, ["1", "1", "2", "1"], "each row with the page it was committed under");
    let pending: Vec<InboxId> = pending.into_iter().map(|p| p.id).collect();
    assert!(pending.windows(2).all(|w| w[0] < w[1]), "oldest first");
    let by_page = store.inbox_pending_by_page().await.unwrap();
    assert_eq!(by_page.iter().map(|p| (p.page_id.as_str(), p.pending)).collect::<Vec<_>>(), [("1", 3), ("2", 1)]);
    assert!(by_page.iter().all(|p| (chrono::Utc::now() - p.oldest).num_seconds() < 60), "{by_page:?}");
    let receipt = InboxRow { done: true, ..row("1", "h:receipt") };
    assert!(store.inbox_insert(std::slice::from_ref(&receipt)).await.unwrap()[0].is_some());
    assert_eq!(store.inbox_insert(&[receipt]).await.unwrap(), vec![None], "a row stored done still dedups");
    assert_eq!(store.inbox_pending(chrono::Utc::now(), 10).await.unwrap().len(), 4, "and is never pending");
    let ids = store.inbox_pending_ids(chrono::Utc::now(), 10).await.unwrap();
    assert_eq!(ids.iter().map(|(id, _)| *id).collect::<Vec<_>>(), pending);
    assert_eq!(ids[2].1, "2");
    assert_eq!(store.inbox_pending_event(pending[0]).await.unwrap().as_deref(), Some("{}"));
    let hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    assert!(store.inbox_pending(hour_ago, 10).await.unwrap().is_empty(), "only rows received before the time");
    store.inbox_finish(&[(pending[0], Outcome::DONE), (pending[1], Outcome::Failed("551".into()))]).await.unwrap();
    let counts = store.inbox_counts().await.unwrap();
    assert_eq!(counts, vec![("done".to_owned(), 2), ("failed".to_owned(), 1), ("pending".to_owned(), 2)]);
    assert_eq!(store.inbox_requeue_failed(None).await.unwrap(), 1);
    assert_eq!(store.inbox_pending(chrono::Utc::now(), 10).await.unwrap().len(), 3);
}

/// A reply recorded marked as about to be sent (its tenant sends it at once, with no mark write of its own) is,
/// like a reply marked by `replies_attempting`, of unknown outcome after a crash until Meta's answer is stored;
/// one recorded unmarked is known never sent.
async fn a_reply_recorded_as_about_to_be_sent_is_of_unknown_outcome_until_it_is_marked_sent(db: TestDb) {
    use switchboard::store::{InboxRow, NewReply};
    let store = &db.store;
    let row =
        InboxRow { page_id: page("1"), dedup_key: "m:a".into(), event: "{}".into(), customer_id: None, done: false };
    let inbox_id = store.inbox_insert(&[row]).await.unwrap()[0].unwrap();
    let reply = |seq: i32, attempting: bool| NewReply {
        inbox_id,
        seq,
        text: format!("r{seq}"),
        recipient: "7001".into(),
        fence: None,
        attempting,
    };
    let recorded = store.replies_record(&[reply(0, true), reply(1, false)]).await.unwrap();
    assert_eq!(recorded.iter().map(|r| r.unknown).collect::<Vec<_>>(), [true, false], "as recorded");
    let stored = || async { store.replies_of(inbox_id).await.unwrap().iter().map(|r| r.unknown).collect::<Vec<_>>() };
    assert_eq!(stored().await, [true, false], "as read after a restart");
    // Recording again returns what was stored first, marked or not (the recorder trusts it as its own mark).
    let again = store.replies_record(&[reply(0, false), reply(1, true)]).await.unwrap();
    assert_eq!(again.iter().map(|r| r.unknown).collect::<Vec<_>>(), [true, false], "the first recording holds");
    assert_eq!(stored().await, [true, false]);
    store.inbox_progress(&[(recorded[0].id, Some("m_sent".into()))], &[]).await.unwrap();
    assert_eq!(stored().await, [false, false], "sent: known");
}

async fn outbox_keeps_the_first_recording_and_marks_replies_sent_once(db: TestDb) {
    use switchboard::store::{InboxRow, NewReply, RecordedReply};
    let store = &db.store;
    let row =
        InboxRow { page_id: page("1"), dedup_key: "m:a".into(), event: "{}".into(), customer_id: None, done: false };
    let inbox_id = store.inbox_insert(&[row]).await.unwrap()[0].unwrap();
    let reply = |seq: i32, text: &str| NewReply {
        inbox_id,
        seq,
        text: text.into(),
        recipient: "7001".into(),
        fence: None,
        attempting: false,
    };
    let first = store.replies_record(&[reply(0, "hello"), reply(1, "world")]).await.unwrap();
    assert_eq!(
        first.iter().map(|r| (r.text.as_str(), r.sent)).collect::<Vec<_>>(),
        [("hello", false), ("world", false)]
    );
    assert_eq!(store.replies_of(inbox_id).await.unwrap(), first);

    store.inbox_progress(&[(first[0].id, Some("m_sent_1".into()))], &[]).await.unwrap();
    // A second recording (a bot that answers differently after a restart) keeps what was stored first.
    let again = store.replies_record(&[reply(0, "HELLO"), reply(1, "WORLD")]).await.unwrap();
    assert_eq!(
        again,
        vec![
            RecordedReply {
                id: first[0].id,
                text: "hello".into(),
                sent: true,
                unknown: false,
                recorded_unix: first[0].recorded_unix
            },
            RecordedReply {
                id: first[1].id,
                text: "world".into(),
                sent: false,
                unknown: false,
                recorded_unix: first[1].recorded_unix
            },
        ]
    );
    // A reply marked as about to be sent is of unknown outcome until Meta's answer is stored; one a stopping
    // tenant never sent is known not sent again.
    assert_eq!(store.replies_attempting(&[(first[1].id, None)]).await.unwrap(), [true]);
    let unknown: Vec<bool> = store.replies_of(inbox_id).await.unwrap().iter().map(|r| r.unknown).collect();
    assert_eq!(unknown, [false, true]);
    store.replies_unattempted(&[(first[1].id, None)]).await.unwrap();
    let unknown: Vec<bool> = store.replies_of(inbox_id).await.unwrap().iter().map(|r| r.unknown).collect();
    assert_eq!(unknown, [false, false]);
    // Marking again never overwrites the stored message_id.
    store
        .inbox_progress(&[(first[0].id, Some("m_other".into())), (first[1].id, None)], &[(inbox_id, Outcome::DONE)])
        .await
        .unwrap();
    assert_eq!(store.replies_of(inbox_id).await.unwrap().iter().filter(|r| r.sent).count(), 2);
    assert_eq!(
        db.scalar("SELECT message_id FROM webhook_replies ORDER BY seq LIMIT 1").await.as_deref(),
        Some("m_sent_1")
    );
    assert_eq!(store.inbox_counts().await.unwrap(), vec![("done".to_owned(), 1)]);
    assert!(store.replies_of(InboxId(inbox_id.0 + 1000)).await.unwrap().is_empty());

    // One group may carry the same reply twice (two recordings of one event): both get the first copy.
    let other =
        InboxRow { page_id: page("1"), dedup_key: "m:b".into(), event: "{}".into(), customer_id: None, done: false };
    let other = store.inbox_insert(&[other]).await.unwrap()[0].unwrap();
    let twice = store
        .replies_record(&[
            NewReply {
                inbox_id: other,
                seq: 0,
                text: "one".into(),
                recipient: "7001".into(),
                fence: None,
                attempting: false,
            },
            NewReply {
                inbox_id: other,
                seq: 0,
                text: "two".into(),
                recipient: "7001".into(),
                fence: None,
                attempting: false,
            },
        ])
        .await
        .unwrap();
    assert_eq!(twice[0], twice[1]);
    assert_eq!(twice[0].text, "one");
    assert_eq!(store.replies_of(other).await.unwrap(), vec![twice[0].clone()]);
    assert!(store.replies_record(&[]).await.unwrap().is_empty());
    store.inbox_progress(&[], &[]).await.unwrap();
}

async fn pruning_removes_only_finished_rows_past_retention_with_their_replies(db: TestDb) {
    use switchboard::store::{InboxRow, NewReply};
    let store = &db.store;
    let rows: Vec<InboxRow> = (0..5)
        .map(|i| InboxRow {
            page_id: page("1"),
            dedup_key: format!("m:{i}"),
            event: "{}".into(),
            customer_id: None,
            done: false,
        })
        .collect();
    let ids: Vec<InboxId> = store.inbox_insert(&rows).await.unwrap().into_iter().flatten().collect();
    store
        .replies_record(&[NewReply {
            inbox_id: ids[0],
            seq: 0,
            text: "hi".into(),
            recipient: "7001".into(),
            fence: None,
            attempting: false,
        }])
        .await
        .unwrap();
    store
        .inbox_finish(&[(ids[0], Outcome::DONE), (ids[1], Outcome::Failed("551".into())), (ids[2], Outcome::DONE)])
        .await
        .unwrap();

    let week_ago = chrono::Utc::now() - chrono::Duration::days(7);
    assert_eq!(store.inbox_prune(week_ago, 100).await.unwrap(), 0, "nothing finished a week ago");
    let soon = chrono::Utc::now() + chrono::Duration::seconds(5);
    assert_eq!(store.inbox_prune(soon, 2).await.unwrap(), 2, "at most the limit, oldest first");
    assert_eq!(store.inbox_prune(soon, 100).await.unwrap(), 1);
    assert_eq!(store.inbox_prune(soon, 100).await.unwrap(), 0);
    assert_eq!(store.inbox_counts().await.unwrap(), vec![("pending".to_owned(), 2)], "pending rows are kept");
    assert_eq!(db.count("webhook_replies").await, 0, "replies go with their event");
    // The dedup key of a pruned row is free again; a kept one still dedups.
    let again = store.inbox_insert(&[rows[0].clone(), rows[4].clone()]).await.unwrap();
    assert!(again[0].is_some() && again[1].is_none(), "{again:?}");
}

/// A stopping owner's late "never attempted" mark holds only under its fence: once another node has claimed
/// the Page, the reply stays of unknown outcome, for the new owner to settle before it sends anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_never_attempted_mark_holds_only_while_its_writer_owns_the_page() {
    use switchboard::store::{Fence, InboxRow, NewReply};
    let db = TestDb::postgres().await;
    let store = &db.store;
    let old = store.node_join("old", 60_000).await.unwrap();
    let epoch = store.page_claim(&page("1"), old).await.unwrap().unwrap();
    let fence = Fence { node: old, page: page("1"), epoch };
    let row =
        InboxRow { page_id: page("1"), dedup_key: "m:a".into(), event: "{}".into(), customer_id: None, done: false };
    let inbox_id = store.inbox_insert(&[row]).await.unwrap()[0].unwrap();
    let reply = |seq: i32| NewReply {
        inbox_id,
        seq,
        text: format!("r{seq}"),
        recipient: "7001".into(),
        fence: None,
        attempting: false,
    };
    let ids: Vec<_> = store.replies_record(&[reply(0), reply(1)]).await.unwrap().into_iter().map(|r| r.id).collect();
    let marks: Vec<_> = ids.iter().map(|id| (*id, Some(fence.clone()))).collect();
    assert_eq!(store.replies_attempting(&marks).await.unwrap(), [true, true]);
    let unknown = || async { store.replies_of(inbox_id).await.unwrap().iter().map(|r| r.unknown).collect::<Vec<_>>() };

    // While the node owns the Page, its mark holds.
    store.replies_unattempted(&marks[..1]).await.unwrap();
    assert_eq!(unknown().await, [false, true]);
    // The Page moves to another node; the old owner's late mark no longer holds.
    store.node_leave(old).await.unwrap();
    let new = store.node_join("new", 60_000).await.unwrap();
    assert_eq!(store.page_claim(&page("1"), new).await.unwrap(), Some(epoch + 1));
    store.replies_unattempted(&marks[1..]).await.unwrap();
    assert_eq!(unknown().await, [false, true], "the reply stays of unknown outcome");
}

/// A claim whose answer was lost (the statement committed, the connection broke) leaves the Page owned by a
/// node that does not know it: that node may claim it again (a new epoch fences anything of the old one), and
/// nobody else may while it lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_may_claim_again_a_page_the_database_says_it_owns() {
    let db = TestDb::postgres().await;
    let store = &db.store;
    let (me, other) = (store.node_join("me", 60_000).await.unwrap(), store.node_join("other", 60_000).await.unwrap());
    let epoch = store.page_claim(&page("1"), me).await.unwrap().unwrap();
    assert_eq!(store.page_claim(&page("1"), other).await.unwrap(), None, "a live owner keeps it");
    assert_eq!(store.page_claim(&page("1"), me).await.unwrap(), Some(epoch + 1));
    store.page_release(&page("1"), me, epoch + 1).await.unwrap();
    assert_eq!(store.page_claim(&page("1"), other).await.unwrap(), Some(epoch + 2), "released, anyone may");
}

/// PostgreSQL's group-commit writes keep their connections between writes (skipping sqlx's test round
/// trips): when the server drops them, writes go on on fresh ones, and closing the store gives them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_writer_connections_give_way_when_the_server_drops_them_and_never_hold_up_close() {
    use switchboard::store::InboxRow;
    let db = TestDb::postgres().await;
    let store = &db.store;
    let row = |key: &str| InboxRow {
        page_id: page("1"),
        dedup_key: key.into(),
        event: "{}".into(),
        customer_id: None,
        done: false,
    };
    store.inbox_insert(&[row("m:1")]).await.unwrap();
    store.inbox_insert(&[row("m:2")]).await.unwrap();
    db.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    // A write on a connection the server dropped fails (the webhook answers 503 and Meta retries); the
    // connection is not kept, so the next write takes a fresh one.
    let mut stored = None;
    for attempt in 0..3 {
        match store.inbox_insert(&[row("m:3")]).await {
            Ok(ids) => {
                stored = Some((attempt, ids));
                break;
            }
            Err(err) => assert!(attempt == 0, "only the first write may meet the dropped connection: {err}"),
        }
    }
    let (_, ids) = stored.expect("writes go on after the server dropped the connections");
    assert!(ids[0].is_some(), "m:3 stored once");
    assert_eq!(db.count("webhook_inbox").await, 3);
    tokio::time::timeout(std::time::Duration::from_secs(10), store.close())
        .await
        .expect("closing the store gives the kept connections back instead of waiting for them");
}

fn unhandled(kind: &str, raw: &str) -> UnhandledRow {
    UnhandledRow {
        object: "page".to_owned(),
        kind: kind.to_owned(),
        reason: "unknown_event".to_owned(),
        detail: "entry 0, messaging item 1: event kind is not handled".to_owned(),
        account_id: Some("104711112233445".to_owned()),
        raw: raw.to_owned(),
        raw_hash: format!("hash-of-{raw}"),
    }
}

async fn unhandled_parts_are_kept_once_summarized_listed_and_pruned(db: TestDb) {
    let store = &db.store;
    let a = unhandled("app_roles", r#"{"app_roles":{}}"#);
    let b = unhandled("game_play", r#"{"game_play":{}}"#);
    store.unhandled_insert(&[a.clone(), b.clone()]).await.unwrap();
    store.unhandled_insert(std::slice::from_ref(&a)).await.unwrap();
    let recent = store.unhandled_recent(10).await.unwrap();
    assert_eq!(recent.len(), 2, "a redelivered part is kept once");
    assert_eq!((recent[0].kind.as_str(), recent[0].raw.as_str()), ("game_play", b.raw.as_str()), "newest first");
    assert_eq!(recent[1].account_id.as_deref(), Some("104711112233445"));
    let summary = store.unhandled_summary().await.unwrap();
    let counts: Vec<(&str, i64)> = summary.iter().map(|s| (s.kind.as_str(), s.count)).collect();
    assert_eq!(counts, [("app_roles", 1), ("game_play", 1)]);
    assert!(summary[0].last_at <= switchboard::clock::now());
    assert_eq!(store.unhandled_prune(switchboard::clock::now() - chrono::Duration::hours(1), 10).await.unwrap(), 0);
    assert_eq!(store.unhandled_prune(switchboard::clock::now() + chrono::Duration::seconds(1), 10).await.unwrap(), 2);
    assert!(store.unhandled_recent(10).await.unwrap().is_empty());
}

async fn old_oauth_states_are_pruned_and_recent_ones_kept(db: TestDb) {
    let store = &db.store;
    let c = client(store, "acme").await;
    let expires = switchboard::clock::now() + chrono::Duration::minutes(10);
    for hash in [b"state-one", b"state-two"] {
        store
            .create_oauth_state(&NewOAuthState {
                state_hash: hash.to_vec(),
                client_id: c.id,
                user_id: None,
                expires_at: expires,
                browser_hash: b"browser".to_vec(),
                link_expires_at: None,
            })
            .await
            .unwrap();
    }
    store.set_oauth_outcome(b"state-two", "result-two", "{}").await.unwrap();
    assert!(store.oauth_outcome("result-two").await.unwrap().is_some(), "read by its result id");
    assert_eq!(store.prune_oauth_states(switchboard::clock::now() - chrono::Duration::hours(24)).await.unwrap(), 0);
    assert_eq!(db.count("oauth_states").await, 2, "states younger than the cut-off are kept");
    assert_eq!(store.prune_oauth_states(switchboard::clock::now() + chrono::Duration::seconds(1)).await.unwrap(), 2);
    assert_eq!(db.count("oauth_states").await, 0);
    assert!(store.oauth_outcome("result-two").await.unwrap().is_none());
}

/// Finishing events looks each one up by its id, whatever the statistics say. Here they were taken when
/// nothing was pending, and a backlog built since (Meta throttled a Page, or PostgreSQL was away): a plan that
/// found the rows through the index of pending rows would read the whole backlog for every progress write,
/// and it used to (with the guard written as `status = 'pending'`, which is that index's predicate).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_progress_write_looks_its_rows_up_by_id_even_when_the_statistics_missed_a_backlog() {
    use sqlx::Connection as _;
    let db = TestDb::postgres().await;
    db.exec(
        "INSERT INTO webhook_inbox (page_id, dedup_key, event, received_at, status, finished_at) \
         SELECT '104711112233445', 'd' || g, '{}', now(), 'done', now() FROM generate_series(1, 20000) g",
    )
    .await;
    db.exec("ANALYZE webhook_inbox").await;
    db.exec(
        "INSERT INTO webhook_inbox (page_id, dedup_key, event, received_at, status) \
         SELECT '104711112233445', 'p' || g, '{}', now(), 'pending' FROM generate_series(1, 20000) g",
    )
    .await;
    let pending: Vec<i64> = (20_001..20_011).collect();
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for fenced in [false, true] {
        let explain = sqlx::AssertSqlSafe(format!("EXPLAIN {}", switchboard::store::progress_sql(fenced)));
        let plan: Vec<String> = sqlx::query_scalar(explain)
            .bind(Vec::<i64>::new())
            .bind(Vec::<String>::new())
            .bind(&pending)
            .bind(vec![None::<String>; pending.len()])
            .bind(chrono::Utc::now())
            .bind(vec!["104711112233445"; pending.len()])
            .bind(vec![1_i64; pending.len()])
            .bind(vec![1_i64; pending.len()])
            .bind(vec![false; pending.len()])
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let plan = plan.join("\n");
        assert!(!plan.contains("webhook_inbox_pending"), "fenced: {fenced}; the plan reads the pending rows:\n{plan}");
        assert!(plan.contains("webhook_inbox_pkey"), "fenced: {fenced}; the plan:\n{plan}");
    }
}
