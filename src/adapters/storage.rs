//! The engine's view of storage: loading a tenant (its integration, decrypted token and responder) and
//! recording what the engine learns (a dead token, a missing permission). This is where `switchboard`
//! implements the ports the actors crate declares.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use switchboard_actors::{
    AskForPerson, LoadError, PageId, Responder, Rules, RulesResponder, StatusSink, TenantProfile, TenantSource,
};

use crate::adapters::ai::{Ai, AiResponder, Caller};
use crate::adapters::relay::RelayResponder;
use crate::config::EngineConfig;
use crate::domain::{Actor, AuditAction, ClientId};
use crate::secrets::vault::KeyRing;
use crate::store::{AuditEntry, ClientSettings, IntegrationStatus, ResponderSetting, Store};

/// Loads tenants from the store, opening tokens with the vault.
pub struct StoreTenants {
    store: Store,
    keys: Arc<KeyRing>,
    config: EngineConfig,
    relay_http: reqwest::Client,
    /// The model server, when `ai.base_url` is set.
    ai: Option<Arc<Ai>>,
    /// The default way to ask for a person, shared by every client without one of its own.
    ask_for_person: Arc<AskForPerson>,
}

impl StoreTenants {
    pub fn new(store: Store, keys: Arc<KeyRing>, config: EngineConfig, ai: Option<Arc<Ai>>) -> Self {
        let relay_http = crate::adapters::relay::http_client(config.relay_timeout, config.relay);
        Self { store, keys, config, relay_http, ai, ask_for_person: Arc::default() }
    }

    /// The rules the client keeps while another responder answers; ones that do not parse are not in force
    /// (the default way to ask for a person then holds, and the deployment's fallback answers).
    async fn kept_rules(&self, client_id: ClientId) -> Result<Option<Rules>, LoadError> {
        let kept = self.store.client_rules_json(client_id).await.map_err(|e| LoadError::Unavailable(e.to_string()))?;
        Ok(kept.and_then(|json| serde_json::from_str::<Rules>(&json).ok()))
    }

    async fn responder(
        &self,
        client_id: ClientId,
        client_slug: &str,
        page: &PageId,
        connected_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(Arc<dyn Responder>, Arc<AskForPerson>, Option<ClientSettings>), LoadError> {
        let settings =
            self.store.client_settings(client_id).await.map_err(|e| LoadError::Unavailable(e.to_string()))?;
        let fallback = self.config.fallback_reply.clone();
        let Some(settings) = settings else {
            return Ok((Arc::new(RulesResponder::new(Rules::default(), fallback)), self.ask_for_person.clone(), None));
        };
        let mut ask = self.ask_for_person.clone();
        // How customers ask for a person lives in the client's rules, and holds whichever bot answers.
        let mut own_ask = |rules: &Rules| {
            if rules.person != *ask {
                ask = Arc::new(rules.person.clone());
            }
        };
        let responder: Arc<dyn Responder> = match &settings.responder {
            ResponderSetting::Rules { rules_json } => {
                let rules: Rules = serde_json::from_str(rules_json)
                    .map_err(|e| LoadError::Unusable(format!("stored rules are not valid: {e}")))?;
                own_ask(&rules);
                Arc::new(RulesResponder::new(rules, fallback))
            }
            ResponderSetting::Relay { url, secret } => {
                if let Some(rules) = self.kept_rules(client_id).await? {
                    own_ask(&rules);
                }
                let secret =
                    self.keys.open_relay_secret(client_id, secret).map_err(|e| LoadError::Unusable(e.to_string()))?;
                Arc::new(RelayResponder::new(
                    self.relay_http.clone(),
                    url.clone(),
                    secret,
                    client_slug,
                    self.config.relay,
                ))
            }
            ResponderSetting::Ai(setting) => {
                let rules = self.kept_rules(client_id).await?.unwrap_or_default();
                own_ask(&rules);
                let Some(ai) = self.ai.clone() else {
                    // A server started without a model server: the rules answer, as they would for a failing
                    // model, and the operator is told.
                    tracing::warn!(
                        client = client_slug,
                        "the client's responder is ai, but ai.base_url is not set; its rules answer"
                    );
                    return Ok((Arc::new(RulesResponder::new(rules, fallback)), ask, Some(settings.clone())));
                };
                let caller = Caller {
                    client_id,
                    client_slug: Arc::from(client_slug),
                    page: Arc::from(page.as_str()),
                    since: Some(connected_at),
                };
                Arc::new(AiResponder::new(
                    ai,
                    caller,
                    setting.clone(),
                    RulesResponder::new(rules.clone(), fallback),
                    rules.person.reply.clone(),
                ))
            }
        };
        Ok((responder, ask, Some(settings)))
    }
}

#[async_trait]
impl TenantSource for StoreTenants {
    async fn load(&self, page: &PageId) -> Result<TenantProfile, LoadError> {
        let integration = self
            .store
            .integration_by_page(page)
            .await
            .map_err(|e| LoadError::Unavailable(e.to_string()))?
            .ok_or(LoadError::NotFound)?;
        if integration.status == IntegrationStatus::Revoked {
            return Err(LoadError::NotFound);
        }
        let (responder, ask_for_person, settings) = self
            .responder(integration.client_id, integration.client_slug.as_str(), page, integration.connected_at)
            .await?;
        let held = self
            .store
            .conversation_holds(page.as_str(), crate::clock::now().timestamp_millis())
            .await
            .map_err(|e| LoadError::Unavailable(e.to_string()))?;
        let token = match (&integration.sealed_token, integration.status) {
            (Some(sealed), IntegrationStatus::Connected | IntegrationStatus::Error) => {
                Some(self.keys.open(page, sealed).map_err(|e| LoadError::Unusable(e.to_string()))?)
            }
            _ => None,
        };
        let blocked = match integration.status {
            IntegrationStatus::Connected => None,
            other => Some(integration.status_reason.clone().unwrap_or_else(|| other.to_string())),
        };
        Ok(TenantProfile {
            client_slug: Arc::from(integration.client_slug.as_str()),
            page_id: integration.page_id.clone(),
            instagram_account_id: integration.instagram_account_id.clone(),
            token,
            blocked,
            responder,
            send_rate_per_second: settings
                .as_ref()
                .and_then(|s| s.send_rate_per_second)
                .unwrap_or(self.config.send_rate_per_page),
            human_pause: settings
                .and_then(|s| s.human_pause_secs)
                .map_or(self.config.engine.human_pause, |s| Duration::from_secs(s.into())),
            held,
            ask_for_person,
        })
    }
}

/// Records status changes the engine discovers, with an audit row each.
pub struct StoreStatus {
    store: Store,
}

impl StoreStatus {
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    async fn record(&self, page: &PageId, status: IntegrationStatus, reason: &str, action: AuditAction) {
        let client_id = match self.store.integration_by_page(page).await {
            Ok(Some(i)) => Some(i.client_id),
            _ => None,
        };
        let entry = AuditEntry {
            actor: Actor::System,
            action,
            client_id,
            page_id: Some(page.clone()),
            detail: reason.to_owned(),
        };
        // The status and its audit row are written together.
        if let Err(err) = self.store.set_integration_status(page, status, Some(reason), Some(&entry)).await {
            tracing::error!(%page, error = %err, "cannot record integration status {status}");
        }
    }
}

#[async_trait]
impl StatusSink for StoreStatus {
    async fn needs_reauth(&self, page: &PageId, reason: &str) {
        self.record(page, IntegrationStatus::NeedsReauth, reason, AuditAction::IntegrationNeedsReauth).await;
    }

    async fn permission_error(&self, page: &PageId, reason: &str) {
        self.record(page, IntegrationStatus::Error, reason, AuditAction::IntegrationError).await;
    }

    async fn person_handling(&self, page: &PageId, person: &str, until_unix_ms: i64) {
        // Kept for whoever runs the Page next; the tenant holds it in memory already.
        if let Err(err) = self.store.hold_conversation(page.as_str(), person, until_unix_ms).await {
            tracing::error!(%page, error = %err, "cannot keep that a person is handling a conversation");
        }
    }

    async fn bot_handling(&self, page: &PageId, person: &str) {
        if let Err(err) = self.store.release_conversation(page.as_str(), person).await {
            tracing::error!(%page, error = %err, "cannot keep that a conversation is the bot's again");
        }
    }
}
