//! Rows as the database returns them, and their conversion into the domain's records: a corrupt row is an
//! error here, at the boundary, rather than a bad value inside.

use chrono::{DateTime, Utc};

use super::model::{
    AuditRecord, Client, ClientSettings, Integration, IntegrationStatus, ResponderSetting, SealedRelaySecret,
    SealedRow, User,
};
use super::{RecordedReply, ReplyId, StoreError};
use crate::domain::{Actor, ClientId, ClientSlug, Email, PageId, Role};
use crate::secrets::vault::SealedToken;

#[derive(sqlx::FromRow)]
pub(crate) struct ClientRow {
    id: ClientId,
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

#[derive(sqlx::FromRow)]
pub(crate) struct IntegrationRow {
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
    client_id: ClientId,
    responder_kind: String,
    rules_json: String,
    relay_url: Option<String>,
    relay_secret: Option<Vec<u8>>,
    relay_key_id: Option<String>,
    send_rate_per_second: Option<i32>,
    human_pause_secs: Option<i32>,
    rules_version: i32,
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
        let human_pause_secs = row.human_pause_secs.map(|s| u32::try_from(s).unwrap_or(60));
        Ok(ClientSettings {
            client_id: row.client_id,
            responder,
            send_rate_per_second: rate,
            human_pause_secs,
            rules_version: i64::from(row.rules_version),
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RelaySecretRow {
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

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
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

/// An outbox row as read back: id, text, sent, never attempted, recorded at.
pub(crate) type ReplyRow = (i64, String, bool, bool, DateTime<Utc>);

/// The engine's view of an outbox row: unknown when neither sent nor known never to have been attempted.
pub(crate) fn recorded_reply((id, text, sent, unattempted, recorded_at): ReplyRow) -> RecordedReply {
    RecordedReply {
        id: ReplyId(id),
        text,
        sent,
        unknown: !sent && !unattempted,
        recorded_unix: recorded_at.timestamp(),
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
