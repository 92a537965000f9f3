//! Portal users and their sessions (only the hash of a session id is stored).

use std::fmt;

use chrono::{DateTime, Utc};

use super::decode::{collect, corrupt};
use super::{Store, StoreError, on};
use crate::domain::{ClientId, Email, Role};

/// A portal user to create; the password is already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub client_id: Option<ClientId>,
    /// The password was made for them (an invitation's one-time password): they must choose their own at
    /// their first sign-in.
    pub must_change_password: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: Email,
    pub password_hash: String,
    pub role: Role,
    pub client_id: Option<ClientId>,
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .field("client_id", &self.client_id)
            .field("must_change_password", &self.must_change_password)
            .finish_non_exhaustive()
    }
}

/// A signed-in portal user's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    email: String,
    password_hash: String,
    role: String,
    client_id: Option<ClientId>,
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
