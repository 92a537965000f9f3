//! Every change to a client business, one function each, that the CLI and the portal both call: the change is
//! stored, every node running one of the client's Pages is told (so its tenant uses it from its next message),
//! and it is audited with who made it. zero-to-production keeps a route's use case beside its domain; here two
//! front ends (the CLI and the portal) reach the same business steps, so the steps live in one place of their
//! own, beside the store they write, and the front ends only parse input and present results.

use switchboard_actors::Router;

use crate::domain::{Actor, AuditAction, ClientId, ClientName, ClientSlug, PageId};
use crate::store::{AuditEntry, Client, Integration, ResponderSetting, Store, StoreError};

/// A client's business steps. Cheap to clone.
#[derive(Clone)]
pub struct Clients {
    store: Store,
    /// This process's engine, if it runs one (the CLI does not): its tenants reload at once.
    router: Option<Router>,
}

impl Clients {
    pub fn new(store: Store, router: Option<Router>) -> Self {
        Self { store, router }
    }

    /// The store the steps write (for reading what they change).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// A new client named `name` with `slug` (a slug already taken is a `Conflict`).
    pub async fn create(&self, who: Actor, name: &ClientName, slug: &ClientSlug) -> Result<Client, StoreError> {
        let client = self.store.create_client(name.as_str(), slug).await?;
        let detail = format!("name {:?}, slug {}", client.name, client.slug);
        self.audit(who, AuditAction::ClientCreated, client.id, detail).await;
        Ok(client)
    }

    /// The client's Send API calls per second per Page (`None`: the deployment's default).
    pub async fn set_rate(&self, who: Actor, client: ClientId, rate: Option<u32>) -> Result<(), StoreError> {
        self.store.set_send_rate(client, rate).await?;
        self.changed(who, client, AuditAction::ClientRateSet, format!("{rate:?}")).await
    }

    /// How long a person's answer silences the bot, in seconds (`None`: the deployment's default).
    pub async fn set_human_pause(&self, who: Actor, client: ClientId, secs: Option<u32>) -> Result<(), StoreError> {
        self.store.set_human_pause(client, secs).await?;
        self.changed(who, client, AuditAction::ClientHumanPauseSet, format!("{secs:?}")).await
    }

    /// Whether the client's AI answers keep only links its knowledge contains (a `Conflict` when the client does
    /// not answer with AI).
    pub async fn set_ai_known_links_only(&self, who: Actor, client: ClientId, on: bool) -> Result<(), StoreError> {
        if !self.store.set_ai_known_links_only(client, on).await? {
            return Err(StoreError::Conflict("the client's Pages do not answer with AI".to_owned()));
        }
        let detail = if on { "known links only" } else { "any links" };
        self.changed(who, client, AuditAction::ClientAiLinksSet, detail.to_owned()).await
    }

    /// Which bot answers the client's customers: its rules, or its own bot over the relay.
    pub async fn set_responder(
        &self,
        who: Actor,
        client: ClientId,
        responder: &ResponderSetting,
    ) -> Result<(), StoreError> {
        self.store.set_responder(client, responder).await?;
        self.changed(who, client, AuditAction::ClientResponderSet, responder.kind().to_owned()).await
    }

    /// The client's rules as the next version after `based_on` (someone who saved meanwhile makes it a
    /// `Conflict`); the version saved.
    pub async fn save_rules(
        &self,
        who: Actor,
        client: ClientId,
        rules_json: &str,
        based_on: i64,
    ) -> Result<i64, StoreError> {
        let saved = self.store.save_rules(client, rules_json, based_on).await?;
        self.changed(who, client, AuditAction::ClientRulesSaved, format!("version {saved}")).await?;
        Ok(saved)
    }

    /// The client's Pages (connected or not).
    pub async fn pages(&self, client: ClientId) -> Result<Vec<Integration>, StoreError> {
        Ok(self.store.list_integrations().await?.into_iter().filter(|i| i.client_id == client).collect())
    }

    /// After what storage says of `page` changed: this process's tenant reloads it at once, the owner's (in a
    /// cluster) through the NOTIFY.
    pub async fn page_changed(&self, page: &PageId) {
        if let Some(router) = &self.router {
            router.reload(page);
        }
        self.store.announce(page).await;
    }

    /// After a change: every tenant of the client's Pages reloads (this process's at once, the others' through
    /// the cluster's NOTIFY; a single server with no engine here picks it up when its tenants next start), and
    /// the change is audited.
    async fn changed(
        &self,
        who: Actor,
        client: ClientId,
        action: AuditAction,
        detail: String,
    ) -> Result<(), StoreError> {
        for i in self.pages(client).await? {
            self.page_changed(&i.page_id).await;
        }
        self.audit(who, action, client, detail).await;
        Ok(())
    }

    async fn audit(&self, actor: Actor, action: AuditAction, client: ClientId, detail: String) {
        self.store.record_audit(AuditEntry { actor, action, client_id: Some(client), page_id: None, detail }).await;
    }
}
