//! Page integrations: one row per Facebook Page, its sealed token, status and who connected it.

use std::fmt;

use chrono::{DateTime, Utc};

use super::audit::insert_audit;
use super::decode::{collect, corrupt};
use super::{AuditEntry, Store, StoreError, on};
use crate::domain::{ClientId, ClientSlug, PageId, SealedToken};

/// The lifecycle of a page connection, as the portal shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// The token works and the page is subscribed.
    Connected,
    /// Meta rejected the token (190 and its subcodes): the client must reconnect.
    NeedsReauth,
    /// Disconnected by the client or deauthorized; the ciphertext is wiped.
    Revoked,
    /// Something the client must fix on Meta's side (a missing permission, a lost Page role).
    Error,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IntegrationStatus::Connected => "connected",
            IntegrationStatus::NeedsReauth => "needs_reauth",
            IntegrationStatus::Revoked => "revoked",
            IntegrationStatus::Error => "error",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Some(match raw {
            "connected" => IntegrationStatus::Connected,
            "needs_reauth" => IntegrationStatus::NeedsReauth,
            "revoked" => IntegrationStatus::Revoked,
            "error" => IntegrationStatus::Error,
            _ => return None,
        })
    }
}

impl fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// A page connection to store: what the OAuth callback learned, with the token already sealed.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    pub client_id: ClientId,
    pub page_id: PageId,
    pub page_name: Option<String>,
    pub instagram_account_id: Option<PageId>,
    pub sealed_token: SealedToken,
    pub permissions_granted: Vec<String>,
    /// `None` for page tokens derived from a long-lived user token: they do not expire by date.
    pub token_expires_at: Option<DateTime<Utc>>,
    /// The app-scoped id of the Facebook user who connected the page (for deauthorize callbacks).
    pub connected_by: Option<String>,
}

/// A row of `client_integrations`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Integration {
    pub id: i64,
    pub client_id: ClientId,
    pub client_name: String,
    pub client_slug: ClientSlug,
    pub page_id: PageId,
    pub page_name: Option<String>,
    pub instagram_account_id: Option<PageId>,
    #[serde(skip)]
    pub sealed_token: Option<SealedToken>,
    pub permissions_granted: Vec<String>,
    pub token_expires_at: Option<DateTime<Utc>>,
    pub connected_by: Option<String>,
    pub status: IntegrationStatus,
    pub status_reason: Option<String>,
    pub status_changed_at: DateTime<Utc>,
    pub connected_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Which integrations a revocation may change: only one that still belongs to what it was checked against,
/// in the same statement (no check-then-act race with a reconnect by someone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevokeIf<'a> {
    /// The page still belongs to this client.
    OwnedBy(ClientId),
    /// The page was still connected by this Facebook user (app-scoped id).
    ConnectedBy(&'a str),
}

#[derive(sqlx::FromRow)]
struct IntegrationRow {
    id: i64,
    client_id: ClientId,
    client_name: String,
    client_slug: String,
    facebook_page_id: String,
    page_name: Option<String>,
    instagram_account_id: Option<String>,
    encrypted_access_token: Option<Vec<u8>>,
    token_key_id: Option<String>,
    permissions_granted: String,
    token_expires_at: Option<DateTime<Utc>>,
    connected_by: Option<String>,
    status: String,
    status_reason: Option<String>,
    status_changed_at: DateTime<Utc>,
    connected_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl TryFrom<IntegrationRow> for Integration {
    type Error = StoreError;
    fn try_from(row: IntegrationRow) -> Result<Self, StoreError> {
        let page_id = corrupt("client_integrations.facebook_page_id", PageId::parse(&row.facebook_page_id))?;
        let sealed_token = match (row.token_key_id, row.encrypted_access_token) {
            (Some(key_id), Some(bytes)) => {
                Some(corrupt("client_integrations.encrypted_access_token", SealedToken::from_stored(&key_id, &bytes))?)
            }
            (None, None) => None,
            _ => return Err(StoreError::Corrupt(format!("integration {page_id}: token and key id disagree"))),
        };
        Ok(Integration {
            id: row.id,
            client_id: row.client_id,
            client_name: row.client_name,
            client_slug: corrupt("clients.slug", ClientSlug::parse(&row.client_slug))?,
            instagram_account_id: row
                .instagram_account_id
                .map(|ig| corrupt("client_integrations.instagram_account_id", PageId::parse(&ig)))
                .transpose()?,
            page_id,
            page_name: row.page_name,
            sealed_token,
            permissions_granted: split_permissions(&row.permissions_granted),
            token_expires_at: row.token_expires_at,
            connected_by: row.connected_by,
            status: IntegrationStatus::parse(&row.status)
                .ok_or_else(|| StoreError::Corrupt(format!("unknown integration status {:?}", row.status)))?,
            status_reason: row.status_reason,
            status_changed_at: row.status_changed_at,
            connected_at: row.connected_at,
            updated_at: row.updated_at,
        })
    }
}

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

/// Permissions are stored as one comma-separated column, readable in `psql` and identical on both backends.
fn join_permissions(permissions: &[String]) -> String {
    permissions.join(",")
}

fn split_permissions(stored: &str) -> Vec<String> {
    stored.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}
