//! The `Store` contract, run against both backends.

use switchboard::domain::{ClientSlug, Email, Role};
use switchboard::store::{AuditEntry, IntegrationStatus, NewUser, StoreError};

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
);

async fn clients_are_created_listed_and_unique_by_slug(db: TestDb) {
    let store = db.store.as_ref();
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
    let store = db.store.as_ref();
    let acme = client(store, "acme").await;
    let user = NewUser {
        email: Email::parse("Owner@Acme.example").unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        role: Role::Client,
        client_id: Some(acme.id),
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
    let store = db.store.as_ref();
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let first = store.upsert_integration(&new_integration(&keys, &acme, "104711112233445", "token-one")).await.unwrap();
    assert_eq!(first.status, IntegrationStatus::Connected);
    assert_eq!(first.client_slug.as_str(), "acme");
    assert_eq!(first.client_name, "Client acme");
    assert_eq!(first.permissions_granted, vec!["pages_messaging", "pages_manage_metadata"]);
    assert_eq!(first.token_expires_at, None);

    let p = page("104711112233445");
    assert!(store.set_integration_status(&p, IntegrationStatus::NeedsReauth, Some("190/460")).await.unwrap());

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
    let store = db.store.as_ref();
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
    let store = db.store.as_ref();
    let keys = ring(&key_entry("k1"));
    let old = client(store, "old-owner").await;
    let new = client(store, "new-owner").await;
    store.upsert_integration(&new_integration(&keys, &old, "777", "t1")).await.unwrap();
    store.set_integration_status(&page("777"), IntegrationStatus::Revoked, Some("disconnected")).await.unwrap();
    let taken = store.upsert_integration(&new_integration(&keys, &new, "777", "t2")).await.unwrap();
    assert_eq!(taken.client_id, new.id);
    assert_eq!(taken.client_slug.as_str(), "new-owner");
    assert_eq!(taken.status, IntegrationStatus::Connected);
}

async fn upsert_for_an_unknown_client_is_not_found(db: TestDb) {
    let store = db.store.as_ref();
    let keys = ring(&key_entry("k1"));
    let mut ghost = client(store, "real").await;
    ghost.id += 1000;
    let err = store.upsert_integration(&new_integration(&keys, &ghost, "888", "t")).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    assert!(store.list_integrations().await.unwrap().is_empty());
}

async fn status_changes_record_reason_and_time(db: TestDb) {
    let store = db.store.as_ref();
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let created = store.upsert_integration(&new_integration(&keys, &acme, "42", "t")).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(store.set_integration_status(&page("42"), IntegrationStatus::Error, Some("permission 10")).await.unwrap());
    let changed = store.integration_by_page(&page("42")).await.unwrap().unwrap();
    assert_eq!(changed.status, IntegrationStatus::Error);
    assert_eq!(changed.status_reason.as_deref(), Some("permission 10"));
    assert!(changed.status_changed_at > created.status_changed_at);

    // Same status again: the reason updates, "since when" does not.
    store.set_integration_status(&page("42"), IntegrationStatus::Error, Some("permission 200")).await.unwrap();
    let same = store.integration_by_page(&page("42")).await.unwrap().unwrap();
    assert_eq!(same.status_changed_at, changed.status_changed_at);
    assert_eq!(same.status_reason.as_deref(), Some("permission 200"));

    assert!(!store.set_integration_status(&page("43"), IntegrationStatus::Error, None).await.unwrap());
}

async fn instagram_account_is_linked_to_one_page_only(db: TestDb) {
    let store = db.store.as_ref();
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
    let store = db.store.as_ref();
    let acme = client(store, "acme").await;
    for action in ["client.created", "integration.connected"] {
        store
            .append_audit(&AuditEntry {
                actor: "cli".to_owned(),
                action: action.to_owned(),
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
    let store = db.store.as_ref();
    let row = |page: &str, key: &str| InboxRow { page_id: page.into(), dedup_key: key.into(), event: "{}".into() };
    let ids = store.inbox_insert(&[row("1", "m:a"), row("1", "m:b"), row("1", "m:a"), row("2", "m:a")]).await.unwrap();
    assert!(ids[0].is_some() && ids[1].is_some() && ids[3].is_some(), "{ids:?}");
    assert_eq!(ids[2], None, "a key repeated within one group is stored once");
    let again = store.inbox_insert(&[row("1", "m:a"), row("1", "m:c")]).await.unwrap();
    assert_eq!(again[0], None, "a key already stored is a redelivery");
    assert!(again[1].is_some());
    assert_eq!(store.inbox_insert(&[]).await.unwrap(), Vec::<Option<i64>>::new());

    let pending: Vec<i64> = store.inbox_pending(10).await.unwrap().into_iter().map(|(id, _)| id).collect();
    assert_eq!(pending.len(), 4);
    assert!(pending.windows(2).all(|w| w[0] < w[1]), "oldest first");
    store.inbox_finish(&[(pending[0], None), (pending[1], Some("551".into()))]).await.unwrap();
    let counts = store.inbox_counts().await.unwrap();
    assert_eq!(counts, vec![("done".to_owned(), 1), ("failed".to_owned(), 1), ("pending".to_owned(), 2)]);
    assert_eq!(store.inbox_requeue_failed(None).await.unwrap(), 1);
    assert_eq!(store.inbox_pending(10).await.unwrap().len(), 3);
}
