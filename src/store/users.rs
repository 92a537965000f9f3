//! Portal users and their sessions (only the hash of a session id is stored).

use chrono::{DateTime, Utc};

use super::rows::{UserRow, collect};
use super::{NewUser, Session, Store, StoreError, User, on};
use crate::domain::Email;

impl Store {
    pub async fn create_user(&self, user: &NewUser) -> Result<User, StoreError> {
        on!(self, |pool| {
            let row: UserRow = sqlx::query_as(
                "INSERT INTO users (email, password_hash, role, client_id, must_change_password, created_at) \
                 VALUES ($1, $2, $3, $4, $6, $5) \
                 RETURNING id, email, password_hash, role, client_id, must_change_password, created_at",
            )
            .bind(user.email.as_str())
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(user.client_id)
            .bind(crate::clock::now())
            .bind(user.must_change_password)
            .fetch_one(pool)
            .await
            .map_err(|e| StoreError::from_sqlx(e, || format!("a user with e-mail {} already exists", user.email)))?;
            row.try_into()
        })
    }

    pub async fn user_by_email(&self, email: &Email) -> Result<Option<User>, StoreError> {
        on!(self, |pool| {
            let row: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users WHERE email = $1",
            )
            .bind(email.as_str())
            .fetch_optional(pool)
            .await?;
            row.map(User::try_from).transpose()
        })
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users ORDER BY email",
            )
            .fetch_all(pool)
            .await?;
            collect(rows)
        })
    }

    /// Sets a user's own password (clearing `must_change_password`) and ends their other sessions.
    pub async fn set_password(&self, user_id: i64, password_hash: &str, keep_session: &[u8]) -> Result<(), StoreError> {
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
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
        })
    }

    /// Starts a session (only the hash of its id is stored).
    pub async fn create_session(
        &self,
        id_hash: &[u8],
        user_id: i64,
        csrf_token: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            sqlx::query("DELETE FROM sessions WHERE expires_at <= $1").bind(now).execute(pool).await?;
            sqlx::query(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id_hash)
            .bind(user_id)
            .bind(csrf_token)
            .bind(now)
            .bind(expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The unexpired session with this id hash, with its user.
    pub async fn session(&self, id_hash: &[u8]) -> Result<Option<Session>, StoreError> {
        on!(self, |pool| {
            let row: Option<(i64, String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT user_id, csrf_token, expires_at FROM sessions WHERE id_hash = $1 AND expires_at > $2",
            )
            .bind(id_hash)
            .bind(crate::clock::now())
            .fetch_optional(pool)
            .await?;
            let Some((user_id, csrf_token, expires_at)) = row else { return Ok(None) };
            let user: Option<UserRow> = sqlx::query_as(
                "SELECT id, email, password_hash, role, client_id, must_change_password, created_at FROM users WHERE id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            match user {
                Some(user) => Ok(Some(Session { user: user.try_into()?, csrf_token, expires_at })),
                None => Ok(None),
            }
        })
    }

    pub async fn delete_session(&self, id_hash: &[u8]) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("DELETE FROM sessions WHERE id_hash = $1").bind(id_hash).execute(pool).await?;
            Ok(())
        })
    }
}
