//! Token health: each connected integration is checked once per `oauth.token_check_interval` (token still
//! valid with the required permissions, Page still subscribed), so a dead token is found before a customer's
//! message fails.

use super::Onboarding;
use crate::domain::{Actor, AuditAction, PageId};
use crate::store::{AuditEntry, IntegrationStatus, StoreError};

/// What a token check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckResult {
    Healthy,
    Resubscribed,
    NeedsReauth(String),
    Skipped(String),
}

impl Onboarding {
    /// Checks one connected integration: token still valid with the required permissions (else
    /// needs_reauth, before a customer's message fails), and the page still subscribed (else resubscribe).
    pub async fn check(&self, page: &PageId) -> Result<CheckResult, StoreError> {
        let Some(integration) = self.store.integration_by_page(page).await? else {
            return Ok(CheckResult::Skipped("no such integration".to_owned()));
        };
        if integration.status != IntegrationStatus::Connected {
            return Ok(CheckResult::Skipped(format!("status is {}", integration.status)));
        }
        let Some(sealed) = &integration.sealed_token else { return Ok(CheckResult::Skipped("no token".to_owned())) };
        let token = match self.keys.open(page, sealed) {
            Ok(t) => t,
            Err(e) => return Ok(CheckResult::Skipped(e.to_string())),
        };
        let info = match self.graph.debug_token(&token).await {
            Ok(info) => info,
            Err(e) => return Ok(CheckResult::Skipped(format!("Meta did not answer: {}", e.reason()))),
        };
        let problem = if !info.is_valid {
            Some(format!(
                "Facebook says the token is no longer valid ({})",
                info.problem.as_deref().unwrap_or("no reason given")
            ))
        } else {
            let lost: Vec<&str> = ["pages_messaging", "pages_manage_metadata"]
                .into_iter()
                .filter(|p| self.oauth.required_scopes.iter().any(|r| r == p) && !info.scopes.iter().any(|s| s == p))
                .collect();
            (!lost.is_empty()).then(|| format!("permission {} was removed", lost.join(", ")))
        };
        if let Some(reason) = problem {
            let entry = AuditEntry {
                actor: Actor::System,
                action: AuditAction::IntegrationNeedsReauth,
                client_id: Some(integration.client_id),
                page_id: Some(page.clone()),
                detail: reason.clone(),
            };
            self.store
                .set_integration_status(page, IntegrationStatus::NeedsReauth, Some(&reason), Some(&entry))
                .await?;
            if let Some(router) = &self.router {
                router.invalidate(page, &reason);
            }
            return Ok(CheckResult::NeedsReauth(reason));
        }
        match self.graph.is_subscribed(page.as_str(), &token).await {
            Ok(true) => Ok(CheckResult::Healthy),
            Ok(false) => match self.graph.subscribe(page.as_str(), &token).await {
                Ok(()) => {
                    self.audit(
                        Actor::System,
                        AuditAction::IntegrationResubscribed,
                        Some(integration.client_id),
                        Some(page.clone()),
                        "Meta had unsubscribed the page".to_owned(),
                    )
                    .await;
                    Ok(CheckResult::Resubscribed)
                }
                Err(e) => Ok(CheckResult::Skipped(format!("could not resubscribe: {}", e.reason()))),
            },
            Err(e) => Ok(CheckResult::Skipped(format!("Meta did not answer: {}", e.reason()))),
        }
    }

    /// Checks every connected integration once, spread over `interval` (the server runs this every
    /// `interval`, from its background jobs).
    pub async fn check_round(&self, interval: std::time::Duration) {
        let pages: Vec<PageId> = match self.store.list_integrations().await {
            Ok(list) => list
                .into_iter()
                .filter(|i| i.status == IntegrationStatus::Connected)
                .map(|i| i.page_id)
                .filter(|page| self.owned.as_ref().is_none_or(|owned| owned.owns(page)))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "token health: cannot list integrations");
                return;
            }
        };
        let spacing = interval / u32::try_from(pages.len().max(1)).unwrap_or(u32::MAX);
        for page in pages {
            tokio::time::sleep(spacing).await;
            match self.check(&page).await {
                Ok(result) => tracing::info!(%page, ?result, "token health check"),
                Err(e) => tracing::warn!(%page, error = %e, "token health check failed"),
            }
        }
    }
}
