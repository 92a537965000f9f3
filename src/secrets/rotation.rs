//! Key rotation: re-seal every stored secret (page tokens, relay secrets) under the ring's current key.
//!
//! Rows are read in id order, a batch at a time; each batch is written in one transaction, and a row is
//! only overwritten if it still carries the key id it was read with. A crash between batches leaves every
//! row readable (old rows under the old key, which stays in the ring), and running again resumes with the
//! rows not yet under the current key. Running it when everything is current does nothing.

use async_trait::async_trait;

use crate::domain::{KeyId, SealedToken};
use crate::secrets::vault::{KeyRing, VaultError};
use crate::store::{Resealed, Store, StoreError};

/// What a rotation run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Secrets now sealed under the current key by this run.
    pub rotated: u64,
    /// Secrets that changed underneath this run (a reconnect re-sealed them) and were left alone.
    pub skipped: u64,
    /// Secrets that could not be opened (what they belong to, and why). They keep their old ciphertext.
    pub failed: Vec<(String, String)>,
}

/// One kind of sealed secret: how to read a batch, re-seal one, and write a batch back.
#[async_trait]
trait SealedKind: Sync {
    /// (row id, who it belongs to, sealed) for rows not under `current`, after `after`.
    async fn batch(
        &self,
        store: &Store,
        current: &KeyId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, SealedToken)>, StoreError>;
    fn reseal(&self, keys: &KeyRing, id: i64, owner: &str, sealed: &SealedToken) -> Result<SealedToken, VaultError>;
    async fn write(&self, store: &Store, rows: &[Resealed]) -> Result<u64, StoreError>;
}

struct PageTokens;
struct RelaySecrets;

#[async_trait]
impl SealedKind for PageTokens {
    async fn batch(
        &self,
        store: &Store,
        current: &KeyId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, SealedToken)>, StoreError> {
        let rows = store.sealed_tokens_to_rotate(current, after, limit).await?;
        Ok(rows.into_iter().map(|r| (r.id, r.page_id.as_str().to_owned(), r.sealed)).collect())
    }
    fn reseal(&self, keys: &KeyRing, _id: i64, owner: &str, sealed: &SealedToken) -> Result<SealedToken, VaultError> {
        let page = crate::domain::PageId::parse(owner).map_err(|_| VaultError::Malformed("page id"))?;
        keys.seal(&page, &keys.open(&page, sealed)?)
    }
    async fn write(&self, store: &Store, rows: &[Resealed]) -> Result<u64, StoreError> {
        store.reseal_tokens(rows).await
    }
}

#[async_trait]
impl SealedKind for RelaySecrets {
    async fn batch(
        &self,
        store: &Store,
        current: &KeyId,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, String, SealedToken)>, StoreError> {
        let rows = store.relay_secrets_to_rotate(current, after, limit).await?;
        Ok(rows.into_iter().map(|r| (r.client_id.0, format!("client {}", r.client_id), r.sealed)).collect())
    }
    fn reseal(&self, keys: &KeyRing, id: i64, _owner: &str, sealed: &SealedToken) -> Result<SealedToken, VaultError> {
        let client = crate::domain::ClientId(id);
        keys.seal_relay_secret(client, &keys.open_relay_secret(client, sealed)?)
    }
    async fn write(&self, store: &Store, rows: &[Resealed]) -> Result<u64, StoreError> {
        store.reseal_relay_secrets(rows).await
    }
}

/// Re-seals page tokens, then relay secrets.
pub async fn rotate_all(store: &Store, keys: &KeyRing, batch_size: u32) -> Result<RotationReport, StoreError> {
    let mut report = RotationReport::default();
    for kind in [&PageTokens as &dyn SealedKind, &RelaySecrets] {
        rotate_kind(kind, store, keys, i64::from(batch_size.max(1)), &mut report).await?;
    }
    Ok(report)
}

async fn rotate_kind(
    kind: &dyn SealedKind,
    store: &Store,
    keys: &KeyRing,
    batch_size: i64,
    report: &mut RotationReport,
) -> Result<(), StoreError> {
    let current = keys.current_key_id().clone();
    let mut after = 0;
    loop {
        let batch = kind.batch(store, &current, after, batch_size).await?;
        let Some((last, _, _)) = batch.last() else { break };
        after = *last;
        let mut resealed = Vec::with_capacity(batch.len());
        for (id, owner, sealed) in batch {
            match kind.reseal(keys, id, &owner, &sealed) {
                Ok(new) => resealed.push(Resealed { id, previous: sealed.clone(), sealed: new }),
                Err(err) => report.failed.push((owner, err.to_string())),
            }
        }
        let written = kind.write(store, &resealed).await?;
        report.rotated += written;
        report.skipped += resealed.len() as u64 - written;
        tracing::info!(rotated = report.rotated, through_id = after, "rotation batch committed");
    }
    Ok(())
}
