//! The vault and the store together: what lands in the database, and key rotation.

use switchboard::domain::AccessToken;
use switchboard::secrets::rotation;
use switchboard::secrets::vault::VaultError;
use switchboard::store::Resealed;

use crate::support::{TestDb, client, key_entry, new_integration, on_both_backends, page, ring};

on_both_backends!(
    stored_table_never_holds_the_plaintext_token,
    ciphertext_copied_onto_another_page_fails_to_open,
    rotation_moves_every_row_to_the_new_key_and_is_idempotent,
    rotation_resumes_after_a_partial_run,
    token_key_ids_list_every_key_in_use,
    rotation_never_undoes_a_reconnect_under_the_same_key,
);

const TOKEN: &str = "EAAGm0PX4ZCpsBAVeryRealLookingPageToken1234567890";

async fn stored_table_never_holds_the_plaintext_token(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    for i in 0..5 {
        let token = format!("{TOKEN}{i}");
        store.upsert_integration(&new_integration(&keys, &acme, &format!("10471111223344{i}"), &token)).await.unwrap();
    }
    store.close().await;
    let dump = db.raw_integration_bytes().await;
    assert!(dump.windows(b"10471111223344".len()).any(|w| w == b"10471111223344"), "the dump does hold the rows");
    for needle in [TOKEN.as_bytes().to_vec(), hex::encode(TOKEN).into_bytes(), b"VeryRealLooking".to_vec()] {
        assert!(!dump.windows(needle.len()).any(|w| w == needle.as_slice()), "plaintext token found in the dump");
    }
}

async fn ciphertext_copied_onto_another_page_fails_to_open(db: TestDb) {
    let store = &db.store;
    let keys = ring(&key_entry("k1"));
    let acme = client(store, "acme").await;
    let a = store.upsert_integration(&new_integration(&keys, &acme, "104711112233445", TOKEN)).await.unwrap();

    let mut copied = new_integration(&keys, &acme, "209822223344556", "ignored");
    copied.sealed_token = a.sealed_token.clone().unwrap();
    let b = store.upsert_integration(&copied).await.unwrap();
    let err = keys.open(&b.page_id, b.sealed_token.as_ref().unwrap()).unwrap_err();
    assert!(matches!(err, VaultError::Decrypt { ref page } if page.as_str() == "209822223344556"), "{err}");
    assert_eq!(keys.open(&a.page_id, a.sealed_token.as_ref().unwrap()).unwrap().expose(), TOKEN);
}

async fn rotation_moves_every_row_to_the_new_key_and_is_idempotent(db: TestDb) {
    let store = &db.store;
    let old = key_entry("old");
    let acme = client(store, "acme").await;
    for i in 0..7 {
        let keys = ring(&old);
        store
            .upsert_integration(&new_integration(&keys, &acme, &format!("{}", 1000 + i), &format!("t{i}")))
            .await
            .unwrap();
    }
    let new = key_entry("new");
    let rotated_ring = ring(&format!("{new},{old}"));
    let report = rotation::rotate_all(store, &rotated_ring, 3).await.unwrap();
    assert_eq!((report.rotated, report.skipped, report.failed.len()), (7, 0, 0));

    assert_eq!(store.token_key_ids().await.unwrap(), vec!["new"]);
    let only_new = ring(&new);
    for i in store.list_integrations().await.unwrap() {
        let n = i.page_id.as_str().parse::<u32>().unwrap() - 1000;
        assert_eq!(only_new.open(&i.page_id, i.sealed_token.as_ref().unwrap()).unwrap().expose(), format!("t{n}"));
    }

    let again = rotation::rotate_all(store, &rotated_ring, 3).await.unwrap();
    assert_eq!(again.rotated, 0, "a second run finds nothing to do");
}

async fn rotation_resumes_after_a_partial_run(db: TestDb) {
    let store = &db.store;
    let old_entry = key_entry("old");
    let old = ring(&old_entry);
    let acme = client(store, "acme").await;
    for i in 0..5 {
        store
            .upsert_integration(&new_integration(&old, &acme, &format!("{}", 2000 + i), &format!("t{i}")))
            .await
            .unwrap();
    }
    let rotated = ring(&format!("{},{old_entry}", key_entry("new")));

    // A run that committed one batch of two rows and then crashed.
    let first_batch = store.sealed_tokens_to_rotate(rotated.current_key_id(), 0, 2).await.unwrap();
    let resealed: Vec<Resealed> = first_batch
        .iter()
        .map(|row| Resealed {
            id: row.id,
            previous: row.sealed.clone(),
            sealed: rotated.seal(&row.page_id, &rotated.open(&row.page_id, &row.sealed).unwrap()).unwrap(),
        })
        .collect();
    assert_eq!(store.reseal_tokens(&resealed).await.unwrap(), 2);
    let mut in_use = store.token_key_ids().await.unwrap();
    in_use.sort();
    assert_eq!(in_use, vec!["new", "old"], "half-rotated: both keys in use, every row still opens");
    for i in store.list_integrations().await.unwrap() {
        rotated.open(&i.page_id, i.sealed_token.as_ref().unwrap()).unwrap();
    }

    let report = rotation::rotate_all(store, &rotated, 2).await.unwrap();
    assert_eq!(report.rotated, 3, "the rerun picks up exactly the rows left");
    assert_eq!(store.token_key_ids().await.unwrap(), vec!["new"]);

    // A row re-sealed concurrently (say, a reconnect) since it was read is not overwritten.
    let stale = Resealed {
        id: first_batch[0].id,
        previous: first_batch[0].sealed.clone(),
        sealed: old.seal(&page("2000"), &AccessToken::new("stale".to_owned())).unwrap(),
    };
    assert_eq!(store.reseal_tokens(&[stale]).await.unwrap(), 0);
    let row = store.integration_by_page(&page("2000")).await.unwrap().unwrap();
    assert_eq!(rotated.open(&row.page_id, row.sealed_token.as_ref().unwrap()).unwrap().expose(), "t0");
}

/// A rotation that read a token, then a reconnect (by a server still sealing under the old key) that wrote a
/// new token under that same key id: the rotation's write must not bring the old token back.
async fn rotation_never_undoes_a_reconnect_under_the_same_key(db: TestDb) {
    let store = &db.store;
    let acme = client(store, "acme").await;
    let old_entry = key_entry("old");
    let old = ring(&old_entry);
    store.upsert_integration(&new_integration(&old, &acme, "3000", "the-old-token")).await.unwrap();
    let rotated = ring(&format!("{},{old_entry}", key_entry("new")));
    let read = store.sealed_tokens_to_rotate(rotated.current_key_id(), 0, 10).await.unwrap();
    assert_eq!(read.len(), 1);
    // The reconnect, sealed under "old" again by a process whose ring was not rotated yet.
    store.upsert_integration(&new_integration(&old, &acme, "3000", "the-new-token")).await.unwrap();
    let resealed = Resealed {
        id: read[0].id,
        previous: read[0].sealed.clone(),
        sealed: rotated.seal(&read[0].page_id, &rotated.open(&read[0].page_id, &read[0].sealed).unwrap()).unwrap(),
    };
    assert_eq!(store.reseal_tokens(&[resealed]).await.unwrap(), 0, "the row changed since it was read");
    let row = store.integration_by_page(&page("3000")).await.unwrap().unwrap();
    assert_eq!(rotated.open(&row.page_id, row.sealed_token.as_ref().unwrap()).unwrap().expose(), "the-new-token");
}

async fn token_key_ids_list_every_key_in_use(db: TestDb) {
    let store = &db.store;
    let acme = client(store, "acme").await;
    assert!(store.token_key_ids().await.unwrap().is_empty());
    store.upsert_integration(&new_integration(&ring(&key_entry("b")), &acme, "1", "t")).await.unwrap();
    store.upsert_integration(&new_integration(&ring(&key_entry("a")), &acme, "2", "t")).await.unwrap();
    store.upsert_integration(&new_integration(&ring(&key_entry("a")), &acme, "3", "t")).await.unwrap();
    assert_eq!(store.token_key_ids().await.unwrap(), vec!["a", "b"]);
    let err = ring(&key_entry("b")).check_known(&store.token_key_ids().await.unwrap()).unwrap_err();
    assert!(err.to_string().contains("key id(s) a "), "{err}");
}
