//! The audit log: who did what to which client or page (never a secret).

use chrono::{DateTime, Utc};

use super::decode::corrupt;
use super::{Store, StoreError, on};
use crate::domain::{Actor, AuditAction, ClientId, PageId};

/// An audit row to append. `detail` is free text for people and must never contain a secret.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    pub actor: Actor,
    pub action: AuditAction,
    pub client_id: Option<ClientId>,
    pub page_id: Option<PageId>,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    pub action: String,
    pub client_id: Option<ClientId>,
    pub page_id: Option<String>,
    pub detail: String,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    client_id: Option<ClientId>,
    facebook_page_id: Option<String>,
    detail: String,
}

impl TryFrom<AuditRow> for AuditRecord {
    type Error = StoreError;

    fn try_from(row: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditRecord {
            id: row.id,
            at: row.at,
            actor: corrupt("audit_log.actor", Actor::parse(&row.actor))?,
            action: row.action,
            client_id: row.client_id,
            page_id: row.facebook_page_id,
            detail: row.detail,
        })
    }
}

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
