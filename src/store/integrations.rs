//! Page integrations: one row per Facebook Page, its sealed token, status and who connected it.

use super::audit::insert_audit;
use super::rows::{IntegrationRow, collect, join_permissions};
use super::{AuditEntry, Integration, IntegrationStatus, NewIntegration, RevokeIf, Store, StoreError, on};
use crate::domain::PageId;

/// The columns of an integration as read back, joined with its client for the slug.
macro_rules! integration_select {
    () => {
        "SELECT i.id, i.client_id, i.client_name, c.slug AS client_slug, i.facebook_page_id, i.page_name, \
         i.instagram_account_id, i.encrypted_access_token, i.token_key_id, i.permissions_granted, \
         i.token_expires_at, i.connected_by, i.status, i.status_reason, i.status_changed_at, i.connected_at, \
         i.updated_at FROM client_integrations i JOIN clients c ON c.id = i.client_id"
    };
}

impl Store {
    /// Inserts or updates the integration of `new.page_id`. A reconnect by the owning client updates the
    /// row in place (and clears needs_reauth); a page owned by another client is refused with
    /// `PageOwnedByAnotherClient` and that row is left untouched, unless it was revoked.
    pub async fn upsert_integration(&self, new: &NewIntegration) -> Result<Integration, StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            let written = sqlx::query(
                "INSERT INTO client_integrations (client_id, client_name, facebook_page_id, page_name, \
                     instagram_account_id, encrypted_access_token, token_key_id, permissions_granted, \
                     token_expires_at, connected_by, status, status_reason, status_changed_at, connected_at, \
                     updated_at) \
                 SELECT c.id, c.name, $2, $3, $4, $5, $6, $7, $8, $9, 'connected', NULL, $10, $10, $10 \
                 FROM clients c WHERE c.id = $1 \
                 ON CONFLICT (facebook_page_id) DO UPDATE SET \
                     client_id = excluded.client_id, client_name = excluded.client_name, \
                     page_name = excluded.page_name, instagram_account_id = excluded.instagram_account_id, \
                     encrypted_access_token = excluded.encrypted_access_token, \
                     token_key_id = excluded.token_key_id, permissions_granted = excluded.permissions_granted, \
                     token_expires_at = excluded.token_expires_at, connected_by = excluded.connected_by, \
                     status = 'connected', status_reason = NULL, \
                     status_changed_at = CASE WHEN client_integrations.status = 'connected' \
                         THEN client_integrations.status_changed_at ELSE excluded.status_changed_at END, \
                     connected_at = excluded.connected_at, updated_at = excluded.updated_at \
                 WHERE client_integrations.client_id = excluded.client_id \
                     OR client_integrations.status = 'revoked'",
            )
            .bind(new.client_id)
            .bind(new.page_id.as_str())
            .bind(new.page_name.as_deref())
            .bind(new.instagram_account_id.as_ref().map(PageId::as_str))
            .bind(new.sealed_token.to_stored())
            .bind(new.sealed_token.key_id().as_str())
            .bind(join_permissions(&new.permissions_granted))
            .bind(new.token_expires_at)
            .bind(new.connected_by.as_deref())
            .bind(now)
            .execute(pool)
            .await
            .map_err(|e| {
                StoreError::from_sqlx(e, || {
                    format!("the Instagram account linked to page {} is already linked to another page", new.page_id)
                })
            })?;
            let stored = self.integration_by_page(&new.page_id).await?;
            match stored {
                Some(row) if written.rows_affected() == 1 => Ok(row),
                Some(_) => Err(StoreError::PageOwnedByAnotherClient(new.page_id.clone())),
                None => Err(StoreError::NotFound(format!("client {}", new.client_id))),
            }
        })
    }

    pub async fn integration_by_page(&self, page: &PageId) -> Result<Option<Integration>, StoreError> {
        on!(self, |pool| {
            let row: Option<IntegrationRow> =
                sqlx::query_as(concat!(integration_select!(), " WHERE i.facebook_page_id = $1"))
                    .bind(page.as_str())
                    .fetch_optional(pool)
                    .await?;
            row.map(Integration::try_from).transpose()
        })
    }

    /// The integration whose Page or Instagram account is `account`.
    pub async fn integration_by_account(&self, account: &str) -> Result<Option<Integration>, StoreError> {
        on!(self, |pool| {
            let row: Option<IntegrationRow> = sqlx::query_as(concat!(
                integration_select!(),
                " WHERE i.facebook_page_id = $1 OR i.instagram_account_id = $1 ORDER BY i.id LIMIT 1"
            ))
            .bind(account)
            .fetch_optional(pool)
            .await?;
            row.map(Integration::try_from).transpose()
        })
    }

    pub async fn list_integrations(&self) -> Result<Vec<Integration>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<IntegrationRow> =
                sqlx::query_as(concat!(integration_select!(), " ORDER BY c.slug, i.facebook_page_id"))
                    .fetch_all(pool)
                    .await?;
            collect(rows)
        })
    }

    /// Sets the status of an integration, and appends `audit` in the same transaction when given; returns
    /// false (writing nothing) when there is no such page.
    pub async fn set_integration_status(
        &self,
        page: &PageId,
        status: IntegrationStatus,
        reason: Option<&str>,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE client_integrations SET status = $2, status_reason = $3, updated_at = $4, \
                     status_changed_at = CASE WHEN status = $2 THEN status_changed_at ELSE $4 END \
                 WHERE facebook_page_id = $1",
            )
            .bind(page.as_str())
            .bind(status.as_str())
            .bind(reason)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() != 1 {
                return Ok(false);
            }
            if let Some(entry) = audit {
                insert_audit!(entry, now).execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    /// Wipes the page's ciphertext and marks it revoked with `reason`, if it still matches `only`; false when
    /// there is no such page or it no longer matches (nothing is written then).
    pub async fn revoke_integration(
        &self,
        page: &PageId,
        reason: &str,
        only: RevokeIf<'_>,
    ) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            let (client_id, connected_by) = match only {
                RevokeIf::OwnedBy(client) => (Some(client), None),
                RevokeIf::ConnectedBy(user) => (None, Some(user)),
            };
            let done = sqlx::query(
                "UPDATE client_integrations SET encrypted_access_token = NULL, token_key_id = NULL, \
                     status = 'revoked', status_reason = $2, updated_at = $3, \
                     status_changed_at = CASE WHEN status = 'revoked' THEN status_changed_at ELSE $3 END \
                 WHERE facebook_page_id = $1 AND client_id = COALESCE($4, client_id) \
                     AND ($5 IS NULL OR connected_by = $5)",
            )
            .bind(page.as_str())
            .bind(reason)
            .bind(now)
            .bind(client_id)
            .bind(connected_by)
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Integrations connected by this Facebook user (app-scoped id), any status.
    pub async fn integrations_connected_by(&self, facebook_user_id: &str) -> Result<Vec<Integration>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<IntegrationRow> =
                sqlx::query_as(concat!(integration_select!(), " WHERE i.connected_by = $1 ORDER BY i.id"))
                    .bind(facebook_user_id)
                    .fetch_all(pool)
                    .await?;
            collect(rows)
        })
    }

    /// Forgets which Facebook user connected the pages (data deletion); returns how many rows changed.
    pub async fn forget_connected_by(&self, facebook_user_id: &str) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query("UPDATE client_integrations SET connected_by = NULL WHERE connected_by = $1")
                .bind(facebook_user_id)
                .execute(pool)
                .await?;
            Ok(done.rows_affected())
        })
    }
}
