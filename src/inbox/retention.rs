//! Retention: finished inbox rows, their replies and kept unhandled parts are deleted once old enough, and
//! conversation holds once they ran out.

use std::time::Duration;

use crate::store::{Store, StoreError};

/// Deletes finished inbox rows (and their replies) and kept unhandled parts older than `retention`, in
/// batches, until none are left; returns how many. Pending rows are kept whatever their age.
pub async fn prune(store: &Store, retention: Duration) -> Result<u64, StoreError> {
    const BATCH: i64 = 5000;
    let before = crate::clock::now() - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let mut total = store.prune_conversation_holds(crate::clock::now().timestamp_millis()).await?;
    loop {
        let n = store.inbox_prune(before, BATCH).await? + store.unhandled_prune(before, BATCH).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
    }
}

/// One pruning run (every hour, from the server's background jobs), logging what it removed.
pub async fn prune_logged(store: &Store, retention: Duration) {
    match prune(store, retention).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(rows = n, "pruned finished inbox rows past retention"),
        Err(err) => tracing::warn!(error = %err, "cannot prune the inbox; will try again"),
    }
}
