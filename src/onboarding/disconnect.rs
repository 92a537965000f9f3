//! Disconnecting a Page: only if it still belongs to the client the caller checked.

use super::Onboarding;
use crate::domain::{Actor, AuditAction, ClientId, PageId};
use crate::store::{RevokeIf, StoreError};

impl Onboarding {
    /// Takes the conversation with `person` on `page` back for the bot at Meta (Handover Protocol), after a
    /// client handed it back in the portal: a conversation passed to the Page Inbox would otherwise reach the
    /// bot only as `standby` until someone marks it done there. Why not, if Meta refused or the token is gone.
    pub async fn take_thread_back(&self, page: &PageId, person: &str) -> Result<(), String> {
        let integration = self.store.integration_by_page(page).await.map_err(|e| e.to_string())?;
        let sealed = integration.and_then(|i| i.sealed_token).ok_or_else(|| "the Page has no token".to_owned())?;
        let token = self.keys.open(page, &sealed).map_err(|e| format!("the stored token could not be opened ({e})"))?;
        self.graph.take_thread_control(page.as_str(), &token, person).await.map_err(|e| e.reason())
    }

    /// Disconnects a page of client `owner` (the one the caller checked; `None`: whoever owns it now): wipes the
    /// ciphertext and marks it revoked only if it still belongs to that client, stops its actor, unsubscribes it
    /// at Meta (best effort) and audits. Returns a warning if Meta could not be told.
    pub async fn disconnect(
        &self,
        page: &PageId,
        owner: Option<ClientId>,
        who: Actor,
        reason: &str,
    ) -> Result<Option<String>, StoreError> {
        let integration =
            self.store.integration_by_page(page).await?.ok_or_else(|| StoreError::NotFound(format!("page {page}")))?;
        let owner = owner.unwrap_or(integration.client_id);
        // Opened before the row is revoked (which erases it), to tell Meta afterwards.
        let token = integration.sealed_token.as_ref().map(|sealed| self.keys.open(page, sealed));
        if integration.client_id != owner
            || !self.store.revoke_integration(page, reason, RevokeIf::OwnedBy(owner)).await?
        {
            return Err(StoreError::Conflict(format!("page {page} changed hands meanwhile; nothing was disconnected")));
        }
        if let Some(router) = &self.router {
            router.disconnect(page);
        }
        self.announce(page).await;
        let warning = match token {
            Some(Ok(token)) => self
                .graph
                .unsubscribe(page.as_str(), &token)
                .await
                .err()
                .map(|e| format!("Meta was not told ({}); the page stays disconnected here", e.reason())),
            Some(Err(e)) => Some(format!("the stored token could not be opened ({e})")),
            None => None,
        };
        self.audit(who, AuditAction::IntegrationDisconnected, Some(owner), Some(page.clone()), reason.to_owned()).await;
        Ok(warning)
    }
}
