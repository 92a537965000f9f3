//! Clients (tenants) and their engine settings: responder, send rate, and how long a person's answer
//! silences the bot.

use chrono::{DateTime, Utc};

use super::decode::{collect, corrupt};
use super::{Store, StoreError, on};
use crate::domain::{ClientId, ClientSlug, SealedToken};

/// A tenant: one client business.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Client {
    pub id: ClientId,
    pub name: String,
    pub slug: ClientSlug,
    pub created_at: DateTime<Utc>,
}

/// How a client's pages answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponderSetting {
    /// Keyword rules, as JSON (`switchboard_actors::Rules`).
    Rules { rules_json: String },
    /// POST each event to the client's bot; the signing secret is sealed by the vault.
    Relay { url: String, secret: SealedToken },
    /// A language model answers from the client's knowledge, within a monthly token budget (`None`: the
    /// deployment's `ai.default_monthly_tokens`); the rules answer when it cannot.
    Ai(AiSetting),
}

/// A client's AI answers: what the model may answer from, and what it may spend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AiSetting {
    /// Plain text or Markdown: hours, locations, policies, products, tone.
    pub knowledge: String,
    pub monthly_tokens: Option<u64>,
    /// Links in an answer that the knowledge does not contain are removed.
    pub known_links_only: bool,
}

impl ResponderSetting {
    /// `rules` or `relay`, as the CLI, the portal and the audit name it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rules { .. } => "rules",
            Self::Relay { .. } => "relay",
            Self::Ai(_) => "ai",
        }
    }
}

/// A client's engine settings; a client without a row uses the defaults (rules `{}`, default rate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSettings {
    pub client_id: ClientId,
    pub responder: ResponderSetting,
    pub send_rate_per_second: Option<u32>,
    /// How long a person's answer silences the bot in a conversation; `None`: `engine.human_pause_secs`.
    pub human_pause_secs: Option<u32>,
    /// How often the rules were saved in the portal (0: never).
    pub rules_version: i64,
}

#[derive(sqlx::FromRow)]
struct ClientRow {
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
struct ClientSettingsRow {
    client_id: ClientId,
    responder_kind: String,
    rules_json: String,
    relay_url: Option<String>,
    relay_secret: Option<Vec<u8>>,
    relay_key_id: Option<String>,
    send_rate_per_second: Option<i32>,
    human_pause_secs: Option<i32>,
    rules_version: i32,
    ai_knowledge: Option<String>,
    ai_monthly_tokens: Option<i64>,
    ai_known_links_only: bool,
}

impl TryFrom<ClientSettingsRow> for ClientSettings {
    type Error = StoreError;
    fn try_from(row: ClientSettingsRow) -> Result<Self, StoreError> {
        let responder = match (row.responder_kind.as_str(), row.relay_url, row.relay_secret, row.relay_key_id) {
            ("rules", ..) => ResponderSetting::Rules { rules_json: row.rules_json },
            ("ai", ..) if row.ai_knowledge.is_some() => ResponderSetting::Ai(AiSetting {
                knowledge: row.ai_knowledge.unwrap_or_default(),
                monthly_tokens: row.ai_monthly_tokens.map(|n| u64::try_from(n).unwrap_or(0)),
                known_links_only: row.ai_known_links_only,
            }),
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

impl Store {
    pub async fn create_client(&self, name: &str, slug: &ClientSlug) -> Result<Client, StoreError> {
        on!(self, |pool| {
            let row: ClientRow = sqlx::query_as(
                "INSERT INTO clients (name, slug, created_at) VALUES ($1, $2, $3) \
                 RETURNING id, name, slug, created_at",
            )
            .bind(name)
            .bind(slug.as_str())
            .bind(crate::clock::now())
            .fetch_one(pool)
            .await
            .map_err(|e| StoreError::from_sqlx(e, || format!("a client with slug {slug} already exists")))?;
            row.try_into()
        })
    }

    pub async fn client_by_slug(&self, slug: &ClientSlug) -> Result<Option<Client>, StoreError> {
        on!(self, |pool| {
            let row: Option<ClientRow> =
                sqlx::query_as("SELECT id, name, slug, created_at FROM clients WHERE slug = $1")
                    .bind(slug.as_str())
                    .fetch_optional(pool)
                    .await?;
            row.map(Client::try_from).transpose()
        })
    }

    pub async fn client_by_id(&self, id: ClientId) -> Result<Option<Client>, StoreError> {
        on!(self, |pool| {
            let row: Option<ClientRow> = sqlx::query_as("SELECT id, name, slug, created_at FROM clients WHERE id = $1")
                .bind(id)
                .fetch_optional(pool)
                .await?;
            row.map(Client::try_from).transpose()
        })
    }

    pub async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<ClientRow> =
                sqlx::query_as("SELECT id, name, slug, created_at FROM clients ORDER BY slug").fetch_all(pool).await?;
            collect(rows)
        })
    }

    /// The client's engine settings, if any were set.
    pub async fn client_settings(&self, client_id: ClientId) -> Result<Option<ClientSettings>, StoreError> {
        on!(self, |pool| {
            let row: Option<ClientSettingsRow> = sqlx::query_as(
                "SELECT client_id, responder_kind, rules_json, relay_url, relay_secret, relay_key_id, \
                 send_rate_per_second, human_pause_secs, rules_version, ai_knowledge, ai_monthly_tokens, \
                 ai_known_links_only FROM client_settings WHERE client_id = $1",
            )
            .bind(client_id)
            .fetch_optional(pool)
            .await?;
            row.map(ClientSettings::try_from).transpose()
        })
    }

    /// Chooses the client's responder (keeping its send rate). New rules are the next version, so an editor
    /// open in the portal on the old ones cannot save over them unseen.
    pub async fn set_responder(&self, client_id: ClientId, responder: &ResponderSetting) -> Result<(), StoreError> {
        on!(self, |pool| {
            let (kind, rules, url, secret, key_id) = match responder {
                ResponderSetting::Rules { rules_json } => ("rules", Some(rules_json.as_str()), None, None, None),
                ResponderSetting::Relay { url, secret } => {
                    ("relay", None, Some(url.as_str()), Some(secret.to_stored()), Some(secret.key_id().as_str()))
                }
                ResponderSetting::Ai(_) => ("ai", None, None, None, None),
            };
            let ai = match responder {
                ResponderSetting::Ai(ai) => Some(ai),
                _ => None,
            };
            let ai_tokens = ai.and_then(|a| a.monthly_tokens).map(|n| i64::try_from(n).unwrap_or(i64::MAX));
            // Choosing rules keeps the relay and AI settings (and the other way round), so switching back is
            // one command; the kind decides which one answers. Setting the AI answers sets their budget too
            // (none given: the deployment's default).
            sqlx::query(
                "INSERT INTO client_settings (client_id, responder_kind, rules_json, relay_url, relay_secret, \
                     relay_key_id, updated_at, rules_version, ai_knowledge, ai_monthly_tokens, ai_known_links_only) \
                 VALUES ($1, $2, COALESCE($3, '{}'), $4, $5, $6, $7, CASE WHEN $3 IS NULL THEN 0 ELSE 1 END, \
                     $8, $9, COALESCE($10, FALSE)) \
                 ON CONFLICT (client_id) DO UPDATE SET responder_kind = excluded.responder_kind, \
                     rules_json = COALESCE($3, client_settings.rules_json), \
                     rules_version = client_settings.rules_version + CASE WHEN $3 IS NULL THEN 0 ELSE 1 END, \
                     relay_url = COALESCE($4, client_settings.relay_url), \
                     relay_secret = COALESCE($5, client_settings.relay_secret), \
                     relay_key_id = COALESCE($6, client_settings.relay_key_id), \
                     ai_knowledge = COALESCE($8, client_settings.ai_knowledge), \
                     ai_monthly_tokens = CASE WHEN $8 IS NULL THEN client_settings.ai_monthly_tokens ELSE $9 END, \
                     ai_known_links_only = COALESCE($10, client_settings.ai_known_links_only), \
                     updated_at = excluded.updated_at",
            )
            .bind(client_id)
            .bind(kind)
            .bind(rules)
            .bind(url)
            .bind(secret)
            .bind(key_id)
            .bind(crate::clock::now())
            .bind(ai.map(|a| a.knowledge.as_str()))
            .bind(ai_tokens)
            .bind(ai.map(|a| a.known_links_only))
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The rules the client keeps (also while its relay answers), if it has settings.
    pub async fn client_rules_json(&self, client_id: ClientId) -> Result<Option<String>, StoreError> {
        on!(self, |pool| {
            let row: Option<(String,)> = sqlx::query_as("SELECT rules_json FROM client_settings WHERE client_id = $1")
                .bind(client_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.map(|(json,)| json))
        })
    }

    /// Saves the client's rules as the version after `based_on` (the version the editor started from), and
    /// returns the new version; `Conflict` if another save came first. The responder kind is kept.
    pub async fn save_rules(&self, client_id: ClientId, rules_json: &str, based_on: i64) -> Result<i64, StoreError> {
        let now = crate::clock::now();
        on!(self, |pool| {
            let updated: Option<(i64,)> = sqlx::query_as(
                "UPDATE client_settings SET rules_json = $2, rules_version = rules_version + 1, updated_at = $4 \
                 WHERE client_id = $1 AND rules_version = $3 RETURNING CAST(rules_version AS BIGINT)",
            )
            .bind(client_id)
            .bind(rules_json)
            .bind(based_on)
            .bind(now)
            .fetch_optional(pool)
            .await?;
            // A client's first settings: only an editor that started from nothing (version 0) may create them.
            let saved = match updated {
                Some((v,)) => Some(v),
                None if based_on == 0 => sqlx::query_as::<_, (i64,)>(
                    "INSERT INTO client_settings (client_id, rules_json, rules_version, updated_at) \
                     VALUES ($1, $2, 1, $3) ON CONFLICT (client_id) DO NOTHING RETURNING CAST(rules_version AS BIGINT)",
                )
                .bind(client_id)
                .bind(rules_json)
                .bind(now)
                .fetch_optional(pool)
                .await?
                .map(|(v,)| v),
                None => None,
            };
            saved.ok_or_else(|| {
                StoreError::Conflict("someone else saved these rules meanwhile; reload to see their version".to_owned())
            })
        })
    }

    /// Whether the client's AI answers keep only links its knowledge contains; false when the client does not
    /// answer with AI (nothing is changed then).
    pub async fn set_ai_known_links_only(&self, client_id: ClientId, on: bool) -> Result<bool, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query(
                "UPDATE client_settings SET ai_known_links_only = $2, updated_at = $3 \
                 WHERE client_id = $1 AND responder_kind = 'ai'",
            )
            .bind(client_id)
            .bind(on)
            .bind(crate::clock::now())
            .execute(pool)
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Sets (or with `None` clears) the client's per-page send rate.
    pub async fn set_send_rate(&self, client_id: ClientId, rate: Option<u32>) -> Result<(), StoreError> {
        self.set_number(client_id, Setting::SendRate, rate).await
    }

    /// Sets (or with `None` clears) how long, in seconds, a person's answer silences the client's bot.
    pub async fn set_human_pause(&self, client_id: ClientId, secs: Option<u32>) -> Result<(), StoreError> {
        self.set_number(client_id, Setting::HumanPause, secs).await
    }

    async fn set_number(&self, client_id: ClientId, setting: Setting, value: Option<u32>) -> Result<(), StoreError> {
        let column = match setting {
            Setting::SendRate => "send_rate_per_second",
            Setting::HumanPause => "human_pause_secs",
        };
        let sql = format!(
            "INSERT INTO client_settings (client_id, {column}, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (client_id) DO UPDATE SET {column} = excluded.{column}, updated_at = excluded.updated_at"
        );
        on!(self, |pool| {
            let value = value.map(|v| i32::try_from(v).unwrap_or(i32::MAX));
            // The column comes from `Setting`, never from input.
            sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
                .bind(client_id)
                .bind(value)
                .bind(crate::clock::now())
                .execute(pool)
                .await?;
            Ok(())
        })
    }
}

/// The numeric settings of a client, each a column of `client_settings`.
#[derive(Clone, Copy)]
enum Setting {
    SendRate,
    HumanPause,
}
