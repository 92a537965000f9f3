//! Meta's callbacks: Deauthorize (the user removed the app) and Data Deletion. Each `signed_request` is
//! verified, must be fresh, and is handled once (a replay changes nothing).

use super::Onboarding;
use crate::domain::{Actor, AuditAction};
use crate::meta::signed_request::{self, SignedRequestError};
use crate::store::{CallbackClaim, DeletionRequest, IntegrationStatus, RevokeIf, StoreError};

/// Why a Meta callback (`signed_request`) was not handled.
#[derive(Debug, thiserror::Error)]
pub enum MetaCallbackError {
    #[error("{0}")]
    Request(#[from] SignedRequestError),
    #[error("storage is unavailable: {0}")]
    Store(#[from] StoreError),
}

impl Onboarding {
    /// Meta's deauthorize callback: revokes every integration the Facebook user connected (each only if that
    /// user is still the one who connected it).
    pub async fn deauthorize(&self, facebook_user_id: &str) -> Result<usize, StoreError> {
        let integrations = self.store.integrations_connected_by(facebook_user_id).await?;
        let mut revoked = 0;
        for i in integrations.iter().filter(|i| i.status != IntegrationStatus::Revoked) {
            let reason = "the Facebook user who connected it removed the app";
            if !self.store.revoke_integration(&i.page_id, reason, RevokeIf::ConnectedBy(facebook_user_id)).await? {
                continue; // reconnected by someone else meanwhile
            }
            if let Some(router) = &self.router {
                router.disconnect(&i.page_id);
            }
            self.announce(&i.page_id).await;
            self.audit(
                Actor::Meta,
                AuditAction::IntegrationDeauthorized,
                Some(i.client_id),
                Some(i.page_id.clone()),
                String::new(),
            )
            .await;
            revoked += 1;
        }
        Ok(revoked)
    }

    /// Meta's data-deletion callback: revokes the user's integrations, forgets that they connected them,
    /// and records `code` as the confirmation.
    async fn delete_user_data(&self, facebook_user_id: &str, code: &str) -> Result<(), StoreError> {
        let affected = self.deauthorize(facebook_user_id).await?;
        self.store.forget_connected_by(facebook_user_id).await?;
        let now = crate::clock::now();
        let request = DeletionRequest {
            confirmation_code: code.to_owned(),
            requested_at: now,
            completed_at: Some(now),
            integrations_affected: affected as i64,
        };
        self.store.record_deletion(&request, facebook_user_id).await?;
        self.audit(
            Actor::Meta,
            AuditAction::DataDeleted,
            None,
            None,
            format!("confirmation {code}, {affected} integration(s)"),
        )
        .await;
        Ok(())
    }

    /// Handles a Deauthorize Callback: verified, fresh, and not seen before (a replay changes nothing);
    /// returns how many Pages were revoked.
    pub async fn on_deauthorize(&self, signed: &str) -> Result<usize, MetaCallbackError> {
        let request = signed_request::verify(signed, &self.app_secrets, crate::clock::now().timestamp())?;
        let hash = request.key;
        if let CallbackClaim::Seen { .. } = self.store.claim_meta_callback(&hash, "deauthorize", None).await? {
            tracing::info!("deauthorize callback replayed; nothing changed");
            return Ok(0);
        }
        match self.deauthorize(&request.user_id).await {
            Ok(revoked) => Ok(revoked),
            Err(e) => {
                // Handled again when Meta retries.
                let _ = self.store.release_meta_callback(&hash, "deauthorize").await;
                Err(e.into())
            }
        }
    }

    /// Handles a Data Deletion Request: verified, fresh, and done once (a replay gets the same confirmation
    /// code and changes nothing); returns the confirmation code.
    pub async fn on_data_deletion(&self, signed: &str) -> Result<String, MetaCallbackError> {
        let request = signed_request::verify(signed, &self.app_secrets, crate::clock::now().timestamp())?;
        let hash = request.key;
        let mut raw = [0u8; 10];
        getrandom::fill(&mut raw).expect("the OS random source is available");
        let code = hex::encode_upper(raw);
        match self.store.claim_meta_callback(&hash, "data_deletion", Some(&code)).await? {
            CallbackClaim::Seen { confirmation_code: Some(code) } => return Ok(code),
            CallbackClaim::Seen { confirmation_code: None } => {
                return Err(StoreError::Corrupt("a data deletion claim has no confirmation code".to_owned()).into());
            }
            CallbackClaim::New => {}
        }
        match self.delete_user_data(&request.user_id, &code).await {
            Ok(()) => Ok(code),
            Err(e) => {
                let _ = self.store.release_meta_callback(&hash, "data_deletion").await;
                Err(e.into())
            }
        }
    }

    /// The public status page address for a deletion request.
    pub fn deletion_status_url(&self, code: &str) -> String {
        format!("{}/api/auth/facebook/data-deletion/status?code={code}", self.public_url.as_str().trim_end_matches('/'))
    }
}
