//! Meta's signed_request callbacks already handled (so a replay changes nothing), and data deletion requests.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on};

/// Whether a `signed_request` callback is new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackClaim {
    /// First seen now: handle it.
    New,
    /// Seen before (a replay): change nothing; a data deletion answers with this confirmation code.
    Seen { confirmation_code: Option<String> },
}

/// A data-deletion request Meta sent for a Facebook user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletionRequest {
    pub confirmation_code: String,
    pub requested_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub integrations_affected: i64,
}

/// (confirmation code, requested, completed, connections affected).
type DeletionRow = (String, DateTime<Utc>, Option<DateTime<Utc>>, i64);

impl Store {
    /// Claims a `signed_request` callback of `kind` by its hash: `New` the first time (with the confirmation code
    /// to answer replays with, for a data deletion), `Seen` for a replay. Each kind claims on its own: Meta may
    /// send one payload to both callbacks.
    pub async fn claim_meta_callback(
        &self,
        request_hash: &[u8],
        kind: &str,
        confirmation_code: Option<&str>,
    ) -> Result<CallbackClaim, StoreError> {
        on!(self, |pool| {
            let claimed = sqlx::query(
                "INSERT INTO meta_callbacks (request_hash, kind, received_at, confirmation_code) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (request_hash, kind) DO NOTHING",
            )
            .bind(request_hash)
            .bind(kind)
            .bind(crate::clock::now())
            .bind(confirmation_code)
            .execute(pool)
            .await?;
            if claimed.rows_affected() == 1 {
                return Ok(CallbackClaim::New);
            }
            let seen: Option<(Option<String>,)> =
                sqlx::query_as("SELECT confirmation_code FROM meta_callbacks WHERE request_hash = $1 AND kind = $2")
                    .bind(request_hash)
                    .bind(kind)
                    .fetch_optional(pool)
                    .await?;
            Ok(CallbackClaim::Seen { confirmation_code: seen.and_then(|(code,)| code) })
        })
    }

    /// Forgets a claim of `kind` whose handling failed, so Meta's retry is handled again.
    pub async fn release_meta_callback(&self, request_hash: &[u8], kind: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("DELETE FROM meta_callbacks WHERE request_hash = $1 AND kind = $2")
                .bind(request_hash)
                .bind(kind)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// Deletes callback claims received before `before` (older requests are refused as stale anyway).
    pub async fn prune_meta_callbacks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done =
                sqlx::query("DELETE FROM meta_callbacks WHERE received_at < $1").bind(before).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }

    pub async fn record_deletion(&self, request: &DeletionRequest, facebook_user_id: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO data_deletion_requests (confirmation_code, facebook_user_id, requested_at, \
                     completed_at, integrations_affected) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&request.confirmation_code)
            .bind(facebook_user_id)
            .bind(request.requested_at)
            .bind(request.completed_at)
            .bind(request.integrations_affected)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    pub async fn deletion_request(&self, confirmation_code: &str) -> Result<Option<DeletionRequest>, StoreError> {
        on!(self, |pool| {
            let row: Option<DeletionRow> = sqlx::query_as(
                "SELECT confirmation_code, requested_at, completed_at, CAST(integrations_affected AS BIGINT) \
                 FROM data_deletion_requests WHERE confirmation_code = $1",
            )
            .bind(confirmation_code)
            .fetch_optional(pool)
            .await?;
            Ok(row.map(|(confirmation_code, requested_at, completed_at, integrations_affected)| DeletionRequest {
                confirmation_code,
                requested_at,
                completed_at,
                integrations_affected,
            }))
        })
    }
}
