//! Key rotation: re-seal every stored token under the ring's current key.
//!
//! Rows are read in id order, a batch at a time; each batch is written in one transaction, and a row is
//! only overwritten if it still carries the key id it was read with. A crash between batches leaves every
//! row readable (old rows under the old key, which stays in the ring), and running again resumes with the
//! rows not yet under the current key. Running it when everything is current does nothing.

use crate::domain::PageId;
use crate::store::{Resealed, Store, StoreError};
use crate::vault::KeyRing;

/// What a rotation run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RotationReport {
    /// Tokens now sealed under the current key by this run.
    pub rotated: u64,
    /// Tokens that changed underneath this run (a reconnect re-sealed them) and were left alone.
    pub skipped: u64,
    /// Tokens that could not be opened, with the reason. They keep their old ciphertext.
    pub failed: Vec<(PageId, String)>,
}

pub async fn rotate_all(store: &dyn Store, keys: &KeyRing, batch_size: u32) -> Result<RotationReport, StoreError> {
    let current = keys.current_key_id().clone();
    let mut report = RotationReport::default();
    let mut after_id = 0;
    loop {
        let batch = store.sealed_tokens_to_rotate(&current, after_id, i64::from(batch_size.max(1))).await?;
        let Some(last) = batch.last() else { break };
        after_id = last.id;
        let mut resealed = Vec::with_capacity(batch.len());
        for row in batch {
            match keys.open(&row.page_id, &row.sealed).and_then(|token| keys.seal(&row.page_id, &token)) {
                Ok(sealed) => {
                    resealed.push(Resealed { id: row.id, previous_key_id: row.sealed.key_id().clone(), sealed })
                }
                Err(err) => report.failed.push((row.page_id, err.to_string())),
            }
        }
        let written = store.reseal_tokens(&resealed).await?;
        report.rotated += written;
        report.skipped += resealed.len() as u64 - written;
        tracing::info!(rotated = report.rotated, through_id = after_id, "rotation batch committed");
    }
    Ok(report)
}
