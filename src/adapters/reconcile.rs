//! Keeps the engine's directory in step with the store: pages connected or disconnected by another process
//! (the CLI, another node) are registered or stopped here. It also exports what the store says of the Pages:
//! how many are in each status, and which need reconnecting (every node the same, from the database).

use switchboard_actors::Router;

use crate::store::{IntegrationStatus, Store};

/// One pass over every integration (every `oauth.reconcile_interval`, from the server's background jobs).
pub async fn reconcile(store: &Store, router: &Router) {
    match store.list_integrations().await {
        Ok(list) => {
            export(&list);
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

/// Pages connected to a client, per integration status, as the database says.
pub const PAGES: &str = "switchboard_pages";
/// 1 for each Page whose token needs reconnecting (or that Meta refused a permission), as the database says.
pub const PAGE_NEEDS_RECONNECTION: &str = "switchboard_page_needs_reconnection";
/// The integration statuses `switchboard_pages` counts.
pub const PAGE_STATUSES: [&str; 4] = ["connected", "needs_reauth", "error", "revoked"];

/// Pages per status, and each Page that needs its client to reconnect (its token dead, or a permission refused).
fn export(list: &[crate::store::Integration]) {
    for status in PAGE_STATUSES {
        let n = list.iter().filter(|i| i.status.as_str() == status).count();
        metrics::gauge!(PAGES, "status" => status).set(n as f64);
    }
    for i in list {
        let needs = matches!(i.status, IntegrationStatus::NeedsReauth | IntegrationStatus::Error);
        metrics::gauge!(PAGE_NEEDS_RECONNECTION, "client" => i.client_slug.to_string(), "page" => i.page_id.to_string())
            .set(if needs { 1.0 } else { 0.0 });
    }
}
