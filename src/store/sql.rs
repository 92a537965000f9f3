//! The SQL both backends run, written once.
//!
//! `sql_store!` expands to the `Store` implementation for a store type holding a `pool` of either
//! backend. The statements use only what PostgreSQL and SQLite (3.35+) share: `$N` placeholders,
//! `INSERT … ON CONFLICT … DO UPDATE … WHERE`, `RETURNING`. Timestamps are bound from the application's
//! clock, never taken from the database's, so both backends store the same instants.

use chrono::{DateTime, Utc};

use super::StoreError;
use super::model::{
    AuditRecord, Client, ClientSettings, Integration, IntegrationStatus, ResponderSetting, SealedRelaySecret,
    SealedRow, User,
};
use crate::domain::{ClientSlug, Email, PageId, Role};
use crate::vault::SealedToken;

/// The columns of an integration as read back, joined with its client for the slug.
macro_rules! integration_select {
    () => {
        "SELECT i.id, i.client_id, i.client_name, c.slug AS client_slug, i.facebook_page_id, i.page_name, \
         i.instagram_account_id, i.encrypted_access_token, i.token_key_id, i.permissions_granted, \
         i.token_expires_at, i.connected_by, i.status, i.status_reason, i.status_changed_at, i.connected_at, \
         i.updated_at FROM client_integrations i JOIN clients c ON c.id = i.client_id"
    };
}
pub(crate) use integration_select;

/// The audit-row insert for `entry` at `at`, ready to execute on a pool or a transaction.
macro_rules! insert_audit {
    ($entry:expr, $at:expr) => {
        sqlx::query(
            "INSERT INTO audit_log (at, actor, action, client_id, facebook_page_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind($at)
        .bind(&$entry.actor)
        .bind(&$entry.action)
        .bind($entry.client_id)
        .bind($entry.page_id.as_ref().map(PageId::as_str))
        .bind(&$entry.detail)
    };
}
pub(crate) use insert_audit;

/// The oldest `$2` inbox rows finished before `$1`: one pruning batch, whose replies go first, then the rows.
macro_rules! prune_batch {
    () => {
        "(SELECT id FROM webhook_inbox WHERE finished_at < $1 ORDER BY id LIMIT $2)"
    };
}
pub(crate) use prune_batch;

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    id: i64,
    name: String,
    slug: String,
    created_at: DateTime<Utc>,
}

impl TryFrom<ClientRow> for Client {
    type Error = StoreError;
    fn try_from(row: ClientRow) -> Result<Self, StoreError> {
        Ok(Client {
            id: row.id,
            name: row.name,
            slug: corrupt("clients.slug", ClientSlug::parse(&row.slug))?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    email: String,
    password_hash: String,
    role: String,
    client_id: Option<i64>,
    must_change_password: bool,
    created_at: DateTime<Utc>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: row.id,
            email: corrupt("users.email", Email::parse(&row.email))?,
            password_hash: row.password_hash,
            role: corrupt("users.role", Role::parse(&row.role))?,
            client_id: row.client_id,
            must_change_password: row.must_change_password,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct IntegrationRow {
    id: i64,
    client_id: i64,
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

#[derive(sqlx::FromRow)]
pub(crate) struct SealedTokenRow {
    id: i64,
    facebook_page_id: String,
    token_key_id: String,
    encrypted_access_token: Vec<u8>,
}

impl TryFrom<SealedTokenRow> for SealedRow {
    type Error = StoreError;
    fn try_from(row: SealedTokenRow) -> Result<Self, StoreError> {
        Ok(SealedRow {
            id: row.id,
            page_id: corrupt("client_integrations.facebook_page_id", PageId::parse(&row.facebook_page_id))?,
            sealed: corrupt(
                "client_integrations.encrypted_access_token",
                SealedToken::from_stored(&row.token_key_id, &row.encrypted_access_token),
            )?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ClientSettingsRow {
    client_id: i64,
    responder_kind: String,
    rules_json: String,
    relay_url: Option<String>,
    relay_secret: Option<Vec<u8>>,
    relay_key_id: Option<String>,
    send_rate_per_second: Option<i32>,
}

impl TryFrom<ClientSettingsRow> for ClientSettings {
    type Error = StoreError;
    fn try_from(row: ClientSettingsRow) -> Result<Self, StoreError> {
        let responder = match (row.responder_kind.as_str(), row.relay_url, row.relay_secret, row.relay_key_id) {
            ("rules", ..) => ResponderSetting::Rules { rules_json: row.rules_json },
            ("relay", Some(url), Some(secret), Some(key_id)) => ResponderSetting::Relay {
                url,
                secret: corrupt("client_settings.relay_secret", SealedToken::from_stored(&key_id, &secret))?,
            },
            (kind, ..) => {
                return Err(StoreError::Corrupt(format!("client {}: responder {kind:?} is incomplete", row.client_id)));
            }
        };
        let rate = row.send_rate_per_second.map(|r| u32::try_from(r).unwrap_or(1));
        Ok(ClientSettings { client_id: row.client_id, responder, send_rate_per_second: rate })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RelaySecretRow {
    client_id: i64,
    relay_key_id: String,
    relay_secret: Vec<u8>,
}

impl TryFrom<RelaySecretRow> for SealedRelaySecret {
    type Error = StoreError;
    fn try_from(row: RelaySecretRow) -> Result<Self, StoreError> {
        Ok(SealedRelaySecret {
            client_id: row.client_id,
            sealed: corrupt(
                "client_settings.relay_secret",
                SealedToken::from_stored(&row.relay_key_id, &row.relay_secret),
            )?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    at: DateTime<Utc>,
    actor: String,
    action: String,
    client_id: Option<i64>,
    facebook_page_id: Option<String>,
    detail: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(row: AuditRow) -> Self {
        AuditRecord {
            id: row.id,
            at: row.at,
            actor: row.actor,
            action: row.action,
            client_id: row.client_id,
            page_id: row.facebook_page_id,
            detail: row.detail,
        }
    }
}

fn corrupt<T, E: std::fmt::Display>(column: &str, parsed: Result<T, E>) -> Result<T, StoreError> {
    parsed.map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Permissions are stored as one comma-separated column, readable in `psql` and identical on both backends.
pub(crate) fn join_permissions(permissions: &[String]) -> String {
    permissions.join(",")
}

fn split_permissions(stored: &str) -> Vec<String> {
    stored.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

pub(crate) fn collect<R, T>(rows: Vec<R>) -> Result<Vec<T>, StoreError>
where
    T: TryFrom<R, Error = StoreError>,
{
    rows.into_iter().map(T::try_from).collect()
}

/// Expands to `impl Store for $store`, where `$store` has a `pool` field of either backend and
/// `$migrator` is that backend's embedded migrations.
macro_rules! sql_store {
    ($store:ty, $backend:expr, $migrator:expr) => {
        use $crate::domain::{ClientSlug, Email, PageId};
        use $crate::store::sql::{
            collect, insert_audit, integration_select, join_permissions, prune_batch, AuditRow, ClientRow, ClientSettingsRow, IntegrationRow,
            RelaySecretRow, SealedTokenRow, UserRow,
        };
        use $crate::store::{
            AuditEntry, AuditRecord, Client, ClientSettings, ConsumedState, DeletionRequest, InboxRow, Integration,
            IntegrationStatus, NewIntegration, NewReply, NewUser, OAuthOutcome, RecordedReply, Resealed, ResponderSetting,
            SealedRelaySecret, SealedRow, Session, StateRejected, UnhandledRecord, UnhandledRow, UnhandledSummary, User,
        };
        use chrono::{DateTime, Utc};
        use $crate::vault::KeyId;

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            fn backend(&self) -> $crate::store::Backend {
                $backend
            }

            async fn migrate(&self) -> Result<(), StoreError> {
                $migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> Result<(), StoreError> {
                sqlx::query("SELECT 1").execute(&self.pool).await.map_err(StoreError::Unavailable)?;
                Ok(())
            }

            async fn close(&self) {
                self.release_writers();
                self.pool.close().await;
            }

            async fn create_client(&self, name: &str, slug: &ClientSlug) -> Result<Client, StoreError> {
                let row: ClientRow = sqlx::query_as(
                    "INSERT INTO clients (name, slug, created_at) VALUES ($1, $2, $3) \
                     RETURNING id, name, slug, created_at",
                )
                .bind(name)
                .bind(slug.as_str())
                .bind($crate::clock::now())
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::from_sqlx(e, || format!("a client with slug {slug} already exists")))?;
                row.try_into()
            }

            async fn client_by_slug(&self, slug: &ClientSlug) -> Result<Option<Client>, StoreError> {
                let row: Option<ClientRow> =
                    sqlx::query_as("SELECT id, name, slug, created_at FROM clients WHERE slug = $1")
                        .bind(slug.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Client::try_from).transpose()
            }

            async fn client_by_id(&self, id: i64) -> Result<Option<Client>, StoreError> {
                let row: Option<ClientRow> =
                    sqlx::query_as("SELECT id, name, slug, created_at FROM clients WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Client::try_from).transpose()
            }

            async fn client_settings(&self, client_id: i64) -> Result<Option<ClientSettings>, StoreError> {
                let row: Option<ClientSettingsRow> = sqlx::query_as(
                    "SELECT client_id, responder_kind, rules_json, relay_url, relay_secret, relay_key_id, \
                     send_rate_per_second FROM client_settings WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(ClientSettings::try_from).transpose()
            }

            async fn set_responder(&self, client_id: i64, responder: &ResponderSetting) -> Result<(), StoreError> {
                let (kind, rules, url, secret, key_id) = match responder {
                    ResponderSetting::Rules { rules_json } => ("rules", Some(rules_json.as_str()), None, None, None),
                    ResponderSetting::Relay { url, secret } => {
                        ("relay", None, Some(url.as_str()), Some(secret.to_stored()), Some(secret.key_id().as_str()))
                    }
                };
                // Choosing rules keeps the relay settings (and the other way round), so switching back is
                // one command; the kind decides which one answers.
                sqlx::query(
                    "INSERT INTO client_settings (client_id, responder_kind, rules_json, relay_url, relay_secret, \
                         relay_key_id, updated_at) VALUES ($1, $2, COALESCE($3, '{}'), $4, $5, $6, $7) \
                     ON CONFLICT (client_id) DO UPDATE SET responder_kind = excluded.responder_kind, \
                         rules_json = COALESCE($3, client_settings.rules_json), \
                         relay_url = COALESCE($4, client_settings.relay_url), \
                         relay_secret = COALESCE($5, client_settings.relay_secret), \
                         relay_key_id = COALESCE($6, client_settings.relay_key_id), \
                         updated_at = excluded.updated_at",
                )
                .bind(client_id)
                .bind(kind)
                .bind(rules)
                .bind(url)
                .bind(secret)
                .bind(key_id)
                .bind($crate::clock::now())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn set_send_rate(&self, client_id: i64, rate: Option<u32>) -> Result<(), StoreError> {
                let rate = rate.map(|r| i32::try_from(r).unwrap_or(i32::MAX));
                sqlx::query(
                    "INSERT INTO client_settings (client_id, send_rate_per_second, updated_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (client_id) DO UPDATE SET send_rate_per_second = excluded.send_rate_per_second, \
                         updated_at = excluded.updated_at",
                )
                .bind(client_id)
                .bind(rate)
                .bind($crate::clock::now())
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
                let rows: Vec<ClientRow> =
                    sqlx::query_as("SELECT id, name, slug, created_at FROM clients ORDER BY slug")
                        .fetch_all(&self.pool)
                        .await?;
                collect(rows)
            }

            async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
                let row: UserRow = sqlx::query_as(
                    "INSERT INTO users (email, password_hash, role, client_id, must_change_password, created_at) \
                     VALUES ($1, $2, $3, $4, $6, $5) \
                     RETURNING id, email, password_hash, role, client_id, must_change_password, created_at",
                )
                .bind(user.email.as_str())
                .bind(&user.password_hash)
                .bind(user.role.as_str())
                .bind(user.client_id)
                .bind($crate::clock::now())
                .bind(user.must_change_password)
                .fetch_one(&self.pool)
                .await
                .map_err(|e| StoreError::from_sqlx(e, || format!("a user with e-mail {} already exists", user.email)))?;
                row.try_into()
            }

            async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
                let row: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users WHERE email = $1",
                )
                .bind(email.as_str())
                .fetch_optional(&self.pool)
                .await?;
                row.map(User::try_from).transpose()
            }

            async fn list_users(&self) -> Result<Vec<User>, StoreError> {
                let rows: Vec<UserRow> = sqlx::query_as(
                    "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users ORDER BY email",
                )
                .fetch_all(&self.pool)
                .await?;
                collect(rows)
            }

            async fn set_password(
                &self,
                user_id: i64,
                password_hash: &str,
                keep_session: &[u8],
            ) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query("UPDATE users SET password_hash = $2, must_change_password = FALSE WHERE id = $1")
                    .bind(user_id)
                    .bind(password_hash)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id_hash <> $2")
                    .bind(user_id)
                    .bind(keep_session)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_session(
                &self,
                id_hash: &[u8],
                user_id: i64,
                csrf_token: &str,
                expires_at: DateTime<Utc>,
            ) -> Result<(), StoreError> {
                let now = $crate::clock::now();
                sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(&self.pool).await?;
                sqlx::query(
                    "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id_hash)
                .bind(user_id)
                .bind(csrf_token)
                .bind(now)
                .bind(expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, StoreError> {
                let row: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT user_id, csrf_token, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
                )
                .bind(id_hash)
                .bind($crate::clock::now())
                .fetch_optional(&self.pool)
                .await?;
                let Some((user_id, csrf_token, expires_at)) = row else { return Ok(None) };
                let user: Option<UserRow> = sqlx::query_as(
                    "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users WHERE id = $1",
                )
                .bind(user_id)
                .fetch_optional(&self.pool)
                .await?;
                match user {
                    Some(user) => Ok(Some(Session { user: user.try_into()?, csrf_token, expires_at })),
                    None => Ok(None),
                }
            }

            async fn delete_session(&self, id_hash: &[u8]) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(&self.pool).await?;
                Ok(())
            }

            async fn upsert_integration(&self, new: &NewIntegration) -> Result<Integration, StoreError> {
                let now = $crate::clock::now();
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
                .execute(&self.pool)
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
            }

            async fn integration_by_page(&self, page: &PageId) -> Result<Option<Integration>, StoreError> {
                let row: Option<IntegrationRow> =
                    sqlx::query_as(concat!(integration_select!(), " WHERE i.facebook_page_id = $1"))
                        .bind(page.as_str())
                        .fetch_optional(&self.pool)
                        .await?;
                row.map(Integration::try_from).transpose()
            }

            async fn list_integrations(&self) -> Result<Vec<Integration>, StoreError> {
                let rows: Vec<IntegrationRow> =
                    sqlx::query_as(concat!(integration_select!(), " ORDER BY c.slug, i.facebook_page_id"))
                        .fetch_all(&self.pool)
                        .await?;
                collect(rows)
            }

            async fn set_integration_status(
                &self,
                page: &PageId,
                status: IntegrationStatus,
                reason: Option<&str>,
                audit: Option<&AuditEntry>,
            ) -> Result<bool, StoreError> {
                let now = $crate::clock::now();
                let mut tx = self.pool.begin().await?;
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
            }

            async fn revoke_integration(
                &self,
                page: &PageId,
                reason: &str,
                only: $crate::store::RevokeIf<'_>,
            ) -> Result<bool, StoreError> {
                let now = $crate::clock::now();
                let (client_id, connected_by) = match only {
                    $crate::store::RevokeIf::OwnedBy(client) => (Some(client), None),
                    $crate::store::RevokeIf::ConnectedBy(user) => (None, Some(user)),
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
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected() == 1)
            }

            async fn integrations_connected_by(&self, facebook_user_id: &str) -> Result<Vec<Integration>, StoreError> {
                let rows: Vec<IntegrationRow> =
                    sqlx::query_as(concat!(integration_select!(), " WHERE i.connected_by = $1 ORDER BY i.id"))
                        .bind(facebook_user_id)
                        .fetch_all(&self.pool)
                        .await?;
                collect(rows)
            }

            async fn forget_connected_by(&self, facebook_user_id: &str) -> Result<u64, StoreError> {
                let done = sqlx::query("UPDATE client_integrations SET connected_by = NULL WHERE connected_by = $1")
                    .bind(facebook_user_id)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn create_oauth_state(&self, state: &$crate::store::NewOAuthState) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO oauth_states (state_hash, client_id, user_id, created_at, expires_at, browser_hash, \
                         link_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&state.state_hash)
                .bind(state.client_id)
                .bind(state.user_id)
                .bind($crate::clock::now())
                .bind(state.expires_at)
                .bind(&state.browser_hash)
                .bind(state.link_expires_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn consume_oauth_state(
                &self,
                state_hash: &[u8],
                browser_hash: &[u8],
            ) -> Result<Result<ConsumedState, StateRejected>, StoreError> {
                let now = $crate::clock::now();
                let consumed: Option<(i64, Option<i64>)> = sqlx::query_as(
                    "UPDATE oauth_states SET used_at = $2 \
                     WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 AND browser_hash = $3 \
                     RETURNING client_id, user_id",
                )
                .bind(state_hash)
                .bind(now)
                .bind(browser_hash)
                .fetch_optional(&self.pool)
                .await?;
                if let Some((client_id, user_id)) = consumed {
                    return Ok(Ok(ConsumedState { client_id, user_id }));
                }
                let why: Option<(Option<DateTime<Utc>>, DateTime<Utc>, Option<Vec<u8>>)> =
                    sqlx::query_as("SELECT used_at, expires_at, browser_hash FROM oauth_states WHERE state_hash = $1")
                        .bind(state_hash)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(Err(match why {
                    None => StateRejected::Unknown,
                    Some((Some(_), _, _)) => StateRejected::AlreadyUsed,
                    Some((None, expires_at, _)) if expires_at <= now => StateRejected::Expired,
                    Some((None, _, _)) => StateRejected::OtherBrowser,
                }))
            }

            async fn set_oauth_outcome(&self, state_hash: &[u8], outcome: &str) -> Result<(), StoreError> {
                sqlx::query("UPDATE oauth_states SET outcome = $2 WHERE state_hash = $1")
                    .bind(state_hash)
                    .bind(outcome)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn oauth_outcome(&self, state_hash: &[u8]) -> Result<Option<OAuthOutcome>, StoreError> {
                let row: Option<(i64, DateTime<Utc>, Option<String>, Option<DateTime<Utc>>)> = sqlx::query_as(
                    "SELECT client_id, created_at, outcome, link_expires_at FROM oauth_states WHERE state_hash = $1",
                )
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.and_then(|(client_id, created_at, outcome, link_expires_at)| {
                    outcome.map(|outcome| OAuthOutcome { client_id, created_at, outcome, link_expires_at })
                }))
            }

            async fn prune_oauth_states(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let done = sqlx::query("DELETE FROM oauth_states WHERE created_at < $1")
                    .bind(before)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn record_deletion(&self, request: &DeletionRequest, facebook_user_id: &str) -> Result<(), StoreError> {
                sqlx::query(
                    "INSERT INTO data_deletion_requests (confirmation_code, facebook_user_id, requested_at, \
                         completed_at, integrations_affected) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&request.confirmation_code)
                .bind(facebook_user_id)
                .bind(request.requested_at)
                .bind(request.completed_at)
                .bind(request.integrations_affected)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn claim_meta_callback(
                &self,
                request_hash: &[u8],
                kind: &str,
                confirmation_code: Option<&str>,
            ) -> Result<$crate::store::CallbackClaim, StoreError> {
                let claimed = sqlx::query(
                    "INSERT INTO meta_callbacks (request_hash, kind, received_at, confirmation_code) \
                     VALUES ($1, $2, $3, $4) ON CONFLICT (request_hash) DO NOTHING",
                )
                .bind(request_hash)
                .bind(kind)
                .bind($crate::clock::now())
                .bind(confirmation_code)
                .execute(&self.pool)
                .await?;
                if claimed.rows_affected() == 1 {
                    return Ok($crate::store::CallbackClaim::New);
                }
                let seen: Option<(Option<String>,)> =
                    sqlx::query_as("SELECT confirmation_code FROM meta_callbacks WHERE request_hash = $1")
                        .bind(request_hash)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok($crate::store::CallbackClaim::Seen { confirmation_code: seen.and_then(|(code,)| code) })
            }

            async fn release_meta_callback(&self, request_hash: &[u8]) -> Result<(), StoreError> {
                sqlx::query("DELETE FROM meta_callbacks WHERE request_hash = $1")
                    .bind(request_hash)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn prune_meta_callbacks(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                let done =
                    sqlx::query("DELETE FROM meta_callbacks WHERE received_at < $1").bind(before).execute(&self.pool).await?;
                Ok(done.rows_affected())
            }

            async fn deletion_request(&self, confirmation_code: &str) -> Result<Option<DeletionRequest>, StoreError> {
                let row: Option<(String, DateTime<Utc>, Option<DateTime<Utc>>, i64)> = sqlx::query_as(
                    "SELECT confirmation_code, requested_at, completed_at, CAST(integrations_affected AS BIGINT) \
                     FROM data_deletion_requests WHERE confirmation_code = $1",
                )
                .bind(confirmation_code)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(|(confirmation_code, requested_at, completed_at, integrations_affected)| DeletionRequest {
                    confirmation_code,
                    requested_at,
                    completed_at,
                    integrations_affected,
                }))
            }

            async fn token_key_ids(&self) -> Result<Vec<String>, StoreError> {
                let ids: Vec<(String,)> = sqlx::query_as(
                    "SELECT token_key_id FROM client_integrations WHERE token_key_id IS NOT NULL \
                     UNION SELECT relay_key_id FROM client_settings WHERE relay_key_id IS NOT NULL \
                     ORDER BY 1",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(ids.into_iter().map(|(id,)| id).collect())
            }

            async fn sealed_tokens_to_rotate(
                &self,
                current: &KeyId,
                after_id: i64,
                limit: i64,
            ) -> Result<Vec<SealedRow>, StoreError> {
                let rows: Vec<SealedTokenRow> = sqlx::query_as(
                    "SELECT id, facebook_page_id, token_key_id, encrypted_access_token FROM client_integrations \
                     WHERE encrypted_access_token IS NOT NULL AND token_key_id <> $1 AND id > $2 \
                     ORDER BY id LIMIT $3",
                )
                .bind(current.as_str())
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                collect(rows)
            }

            async fn reseal_tokens(&self, rows: &[Resealed]) -> Result<u64, StoreError> {
                self.reseal(
                    "UPDATE client_integrations SET encrypted_access_token = $1, token_key_id = $2 \
                     WHERE id = $3 AND token_key_id = $4 AND encrypted_access_token = $5",
                    rows,
                )
                .await
            }

            async fn relay_secrets_to_rotate(
                &self,
                current: &KeyId,
                after_client_id: i64,
                limit: i64,
            ) -> Result<Vec<SealedRelaySecret>, StoreError> {
                let rows: Vec<RelaySecretRow> = sqlx::query_as(
                    "SELECT client_id, relay_key_id, relay_secret FROM client_settings \
                     WHERE relay_secret IS NOT NULL AND relay_key_id <> $1 AND client_id > $2 \
                     ORDER BY client_id LIMIT $3",
                )
                .bind(current.as_str())
                .bind(after_client_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                collect(rows)
            }

            async fn reseal_relay_secrets(&self, rows: &[Resealed]) -> Result<u64, StoreError> {
                self.reseal(
                    "UPDATE client_settings SET relay_secret = $1, relay_key_id = $2 \
                     WHERE client_id = $3 AND relay_key_id = $4 AND relay_secret = $5",
                    rows,
                )
                .await
            }

            // The three group-committed writes take a statement per backend: PostgreSQL's one array statement
            // per group (postgres.rs), SQLite's one statement per row in a transaction (sqlite.rs).
            async fn inbox_insert(&self, rows: &[InboxRow]) -> Result<Vec<Option<i64>>, StoreError> {
                self.insert_inbox_rows(rows, $crate::clock::now()).await
            }

            async fn inbox_progress(
                &self,
                sent: &[(i64, Option<String>)],
                finished: &[(i64, Option<String>)],
            ) -> Result<(), StoreError> {
                self.write_progress(sent, finished, $crate::clock::now()).await
            }

            async fn replies_record(&self, rows: &[NewReply]) -> Result<Vec<RecordedReply>, StoreError> {
                self.record_replies(rows, $crate::clock::now()).await
            }

            async fn replies_of(&self, inbox_id: i64) -> Result<Vec<RecordedReply>, StoreError> {
                let rows: Vec<(i64, String, bool)> = sqlx::query_as(
                    "SELECT id, body, sent_at IS NOT NULL FROM webhook_replies WHERE inbox_id = $1 ORDER BY seq",
                )
                .bind(inbox_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id, text, sent)| RecordedReply { id, text, sent }).collect())
            }

            async fn inbox_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(concat!("DELETE FROM webhook_replies WHERE inbox_id IN ", prune_batch!()))
                    .bind(before)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await?;
                let done = sqlx::query(concat!("DELETE FROM webhook_inbox WHERE id IN ", prune_batch!()))
                    .bind(before)
                    .bind(limit)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(done.rows_affected())
            }

            async fn inbox_pending(
                &self,
                received_before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<(i64, String)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT id, event FROM webhook_inbox WHERE status = 'pending' AND received_at <= $1 \
                     ORDER BY id LIMIT $2",
                )
                .bind(received_before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?)
            }

            async fn inbox_pending_ids(
                &self,
                received_before: DateTime<Utc>,
                limit: i64,
            ) -> Result<Vec<i64>, StoreError> {
                let rows: Vec<(i64,)> = sqlx::query_as(
                    "SELECT id FROM webhook_inbox WHERE status = 'pending' AND received_at <= $1 ORDER BY id LIMIT $2",
                )
                .bind(received_before)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(|(id,)| id).collect())
            }

            async fn inbox_pending_event(&self, id: i64) -> Result<Option<String>, StoreError> {
                let row: Option<(String,)> =
                    sqlx::query_as("SELECT event FROM webhook_inbox WHERE id = $1 AND status = 'pending'")
                        .bind(id)
                        .fetch_optional(&self.pool)
                        .await?;
                Ok(row.map(|(event,)| event))
            }

            async fn inbox_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
                Ok(sqlx::query_as(
                    "SELECT status, CAST(count(*) AS BIGINT) FROM webhook_inbox GROUP BY status ORDER BY status",
                )
                .fetch_all(&self.pool)
                .await?)
            }

            async fn inbox_requeue_failed(&self, client_id: Option<i64>) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "UPDATE webhook_inbox SET status = 'pending', reason = NULL, finished_at = NULL \
                     WHERE status = 'failed' AND ($1 IS NULL OR page_id IN \
                         (SELECT facebook_page_id FROM client_integrations WHERE client_id = $1))",
                )
                .bind(client_id)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn unhandled_insert(&self, rows: &[UnhandledRow]) -> Result<(), StoreError> {
                let now = $crate::clock::now();
                let mut tx = self.pool.begin().await?;
                for row in rows {
                    sqlx::query(
                        "INSERT INTO webhook_unhandled (received_at, object, kind, reason, detail, account_id, raw, \
                             raw_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (raw_hash) DO NOTHING",
                    )
                    .bind(now)
                    .bind(&row.object)
                    .bind(&row.kind)
                    .bind(&row.reason)
                    .bind(&row.detail)
                    .bind(row.account_id.as_deref())
                    .bind(&row.raw)
                    .bind(&row.raw_hash)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn unhandled_summary(&self) -> Result<Vec<UnhandledSummary>, StoreError> {
                let rows: Vec<(String, String, String, i64, DateTime<Utc>)> = sqlx::query_as(
                    "SELECT object, kind, reason, CAST(count(*) AS BIGINT), max(received_at) FROM webhook_unhandled \
                     GROUP BY object, kind, reason ORDER BY 4 DESC, 1, 2, 3",
                )
                .fetch_all(&self.pool)
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(object, kind, reason, count, last_at)| UnhandledSummary { object, kind, reason, count, last_at })
                    .collect())
            }

            async fn unhandled_recent(&self, limit: i64) -> Result<Vec<UnhandledRecord>, StoreError> {
                let rows: Vec<(i64, DateTime<Utc>, String, String, String, String, Option<String>, String)> =
                    sqlx::query_as(
                        "SELECT id, received_at, object, kind, reason, detail, account_id, raw FROM webhook_unhandled \
                         ORDER BY id DESC LIMIT $1",
                    )
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, received_at, object, kind, reason, detail, account_id, raw)| UnhandledRecord {
                        id,
                        received_at,
                        object,
                        kind,
                        reason,
                        detail,
                        account_id,
                        raw,
                    })
                    .collect())
            }

            async fn unhandled_prune(&self, before: DateTime<Utc>, limit: i64) -> Result<u64, StoreError> {
                let done = sqlx::query(
                    "DELETE FROM webhook_unhandled WHERE id IN \
                     (SELECT id FROM webhook_unhandled WHERE received_at < $1 ORDER BY id LIMIT $2)",
                )
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await?;
                Ok(done.rows_affected())
            }

            async fn append_audit(&self, entry: &AuditEntry) -> Result<(), StoreError> {
                insert_audit!(entry, $crate::clock::now()).execute(&self.pool).await?;
                Ok(())
            }

            async fn recent_audit(&self, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
                let rows: Vec<AuditRow> = sqlx::query_as(
                    "SELECT id, at, actor, action, client_id, facebook_page_id, detail FROM audit_log \
                     ORDER BY id DESC LIMIT $1",
                )
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                Ok(rows.into_iter().map(AuditRecord::from).collect())
            }
        }

        impl $store {
            /// Writes re-sealed secrets with `sql` (`$1` ciphertext, `$2` key id, `$3` row id, `$4` and `$5` the
            /// key id and ciphertext it was read with) in one transaction; returns how many rows still held them.
            async fn reseal(&self, sql: &'static str, rows: &[Resealed]) -> Result<u64, StoreError> {
                let mut tx = self.pool.begin().await?;
                let mut updated = 0;
                for row in rows {
                    let done = sqlx::query(sql)
                        .bind(row.sealed.to_stored())
                        .bind(row.sealed.key_id().as_str())
                        .bind(row.id)
                        .bind(row.previous.key_id().as_str())
                        .bind(row.previous.to_stored())
                        .execute(&mut *tx)
                        .await?;
                    updated += done.rows_affected();
                }
                tx.commit().await?;
                Ok(updated)
            }
        }
    };
}
pub(crate) use sql_store;
