//! Keeps the engine's directory in step with the store: pages connected or disconnected by another process
//! (the CLI, another node) are registered or stopped here.

use switchboard_actors::Router;

use crate::store::{IntegrationStatus, Store};

/// One pass over every integration (every `oauth.reconcile_interval`, from the server's background jobs).
pub async fn reconcile(store: &Store, router: &Router) {
    match store.list_integrations().await {
        Ok(list) => {
            for i in list {
                let known = router.route(i.page_id.as_str()).is_some();
                match i.status {
                    IntegrationStatus::Revoked if known => router.disconnect(&i.page_id),
                    IntegrationStatus::Revoked => {}
                    _ if !known => {
                        router.register(i.page_id.clone(), i.instagram_account_id.clone(), i.client_slug.as_str())
                    }
                    _ => {}
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "reconcile: cannot list integrations"),
    }
}
