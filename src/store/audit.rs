//! The audit log: who did what to which client or page (never a secret).

use super::rows::AuditRow;
use super::{AuditEntry, AuditRecord, Store, StoreError, on};
use crate::domain::PageId;

/// The audit-row insert for `entry` at `at`, ready to execute on a pool or a transaction.
macro_rules! insert_audit {
    ($entry:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, client_id, facebook_page_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($at)
        .bind($entry.actor.to_string())
        .bind($entry.action.as_str())
        .bind($entry.client_id)
        .bind($entry.page_id.as_ref().map(PageId::as_str))
        .bind(&$entry.detail)
    };
}
pub(crate) use insert_audit;

/// Audit rows that could not be written (the change they describe was made).
pub const AUDIT_WRITE_FAILURES: &str = "switchboard_audit_write_failures_total";

impl Store {
    /// Records `entry`. A row that cannot be written never turns a change that was made into an error (the
    /// person would retry what already happened): it is logged at ERROR and counted for an operator.
    pub async fn record_audit(&self, entry: AuditEntry) {
        if let Err(e) = self.append_audit(&entry).await {
            metrics::counter!(AUDIT_WRITE_FAILURES).increment(1);
            tracing::error!(error = %e, action = entry.action.as_str(), "cannot write an audit row; the change was made");
        }
    }

    pub async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
        on!(self, |pool| {
            insert_audit!(entry, crate::clock::now()).execute(pool).await?;
            Ok(())
        })
    }

    /// The newest audit rows first.
    pub async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<AuditRow> = sqlx::query_as(
                "SELECT id, at, actor, action, client_id, facebook_page_id, detail FROM audit_log \
                 ORDER BY id DESC LIMIT $1",
            )
            .bind(limit)
            .fetch_all(pool)
            .await?;
            rows.into_iter().map(AuditRecord::try_from).collect()
        })
    }
}
