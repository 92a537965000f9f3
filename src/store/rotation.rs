//! Sealed secrets read and written for key rotation: Page tokens and relay secrets. A row is written back only
//! if it still holds exactly what was read.

use super::decode::{collect, corrupt};
use super::{Store, StoreError, on};
use crate::domain::{ClientId, KeyId, PageId, SealedToken};

/// A sealed token read for key rotation.
#[derive(Debug, Clone)]
pub struct SealedRow {
    pub id: i64,
    pub page_id: PageId,
    pub sealed: SealedToken,
}

/// A secret re-sealed under the current key, to be written back only if its row still holds exactly what was
/// read (`previous`: key id and ciphertext), so a reconnect that wrote a new secret meanwhile is never undone.
#[derive(Debug, Clone)]
pub struct Resealed {
    pub id: i64,
    pub previous: SealedToken,
    pub sealed: SealedToken,
}

/// A relay secret read for key rotation.
#[derive(Debug, Clone)]
pub struct SealedRelaySecret {
    pub client_id: ClientId,
    pub sealed: SealedToken,
}

#[derive(sqlx::FromRow)]
struct SealedTokenRow {
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
struct RelaySecretRow {
    client_id: ClientId,
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

impl Store {
    /// The distinct key ids that stored secrets (page tokens and relay secrets) were sealed with.
    pub async fn token_key_ids(&self) -> Result<Vec<String>, StoreError> {
        on!(self, |pool| {
            let ids: Vec<(String,)> = sqlx::query_as(
                "SELECT token_key_id FROM client_integrations WHERE token_key_id IS NOT NULL \
                 UNION SELECT relay_key_id FROM client_settings WHERE relay_key_id IS NOT NULL \
                 ORDER BY 1",
            )
            .fetch_all(pool)
            .await?;
            Ok(ids.into_iter().map(|(id,)| id).collect())
        })
    }

    /// Up to `limit` sealed tokens not under `current`, with row id greater than `after_id`, by id.
    pub async fn sealed_tokens_to_rotate(
        &self,
        current: &KeyId,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<SealedRow>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<SealedTokenRow> = sqlx::query_as(
                "SELECT id, facebook_page_id, token_key_id, encrypted_access_token FROM client_integrations \
                 WHERE encrypted_access_token IS NOT NULL AND token_key_id <> $1 AND id > $2 \
                 ORDER BY id LIMIT $3",
            )
            .bind(current.as_str())
            .bind(after_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            collect(rows)
        })
    }

    /// Replaces the given tokens in one transaction. A row whose ciphertext changed since it was read is
    /// skipped (a reconnect or another rotation wrote it). Returns how many rows were updated.
    pub async fn reseal_tokens(&self, rows: &[Resealed]) -> Result<u64, StoreError> {
        self.reseal(
            "UPDATE client_integrations SET encrypted_access_token = $1, token_key_id = $2 \
             WHERE id = $3 AND token_key_id = $4 AND encrypted_access_token = $5",
            rows,
        )
        .await
    }

    /// Up to `limit` relay secrets not under `current`, with client id greater than `after_client_id`.
    pub async fn relay_secrets_to_rotate(
        &self,
        current: &KeyId,
        after_client_id: i64,
        limit: i64,
    ) -> Result<Vec<SealedRelaySecret>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<RelaySecretRow> = sqlx::query_as(
                "SELECT client_id, relay_key_id, relay_secret FROM client_settings \
                 WHERE relay_secret IS NOT NULL AND relay_key_id <> $1 AND client_id > $2 \
                 ORDER BY client_id LIMIT $3",
            )
            .bind(current.as_str())
            .bind(after_client_id)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            collect(rows)
        })
    }

    /// Replaces relay secrets in one transaction (skipping any whose ciphertext changed); `id` is the client id.
    pub async fn reseal_relay_secrets(&self, rows: &[Resealed]) -> Result<u64, StoreError> {
        self.reseal(
            "UPDATE client_settings SET relay_secret = $1, relay_key_id = $2 \
             WHERE client_id = $3 AND relay_key_id = $4 AND relay_secret = $5",
            rows,
        )
        .await
    }

    /// Writes re-sealed secrets with `sql` (`$1` ciphertext, `$2` key id, `$3` row id, `$4` and `$5` the
    /// key id and ciphertext it was read with) in one transaction; returns how many rows still held them.
    async fn reseal(&self, sql: &'static str, rows: &[Resealed]) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
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
        })
    }
}
