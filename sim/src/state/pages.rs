//! Page fields and the app's Page subscriptions.

use serde_json::{Value, json};

use super::*;

/// Fields a Page can subscribe the app to (Instagram fields such as `messaging_seen` live on the app's
/// `instagram` object and are refused here, as Meta refuses them).
pub const PAGE_FIELDS: &[&str] = &[
    "messages",
    "messaging_postbacks",
    "messaging_optins",
    "message_deliveries",
    "message_reads",
    "message_echoes",
    "messaging_referrals",
    "message_reactions",
    "message_edits",
    "messaging_handovers",
    "messaging_policy_enforcement",
    "standby",
    "feed",
];

impl Sim {
    /// Checks a Page token for `/{page-id}/subscribed_apps`: its own page, and pages_manage_metadata.
    fn subscription_token(state: &State, page_id: &str, token: &str) -> Result<(), GraphError> {
        let info = state.valid_token(token)?;
        match &info.kind {
            TokenKind::Page { page_id: own } if own == page_id => {}
            TokenKind::Page { .. } => return Err(GraphError::not_found(page_id)),
            TokenKind::User { .. } => {
                return Err(GraphError::permission(
                    210,
                    "(#210) A page access token is required to request this resource.",
                ));
            }
        }
        if !info.scopes.iter().any(|s| s == "pages_manage_metadata") {
            return Err(GraphError::permission(
                200,
                "(#200) Requires pages_manage_metadata permission to manage the object",
            ));
        }
        Ok(())
    }

    pub fn subscribe(&self, page_id: &str, token: &str, fields: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        let fields: Vec<String> =
            fields.split(',').map(str::trim).filter(|f| !f.is_empty()).map(str::to_owned).collect();
        if fields.is_empty() {
            return Err(GraphError::invalid_parameter("(#100) The parameter subscribed_fields is required"));
        }
        if let Some(bad) = fields.iter().find(|f| !PAGE_FIELDS.contains(&f.as_str())) {
            return Err(GraphError::invalid_parameter(&format!(
                "(#100) Param subscribed_fields[{bad}] must be one of {{{}}}",
                PAGE_FIELDS.join(", ")
            )));
        }
        state.subscriptions.insert(page_id.to_owned(), fields);
        Ok(json!({ "success": true }))
    }

    pub fn subscribed_apps(&self, page_id: &str, token: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        let data: Vec<Value> = state
            .subscriptions
            .get(page_id)
            .map(|fields| {
                vec![json!({
                    "category": "Business",
                    "link": "https://switchboard.invalid/",
                    "name": "Switchboard",
                    "id": state.config.app_id,
                    "subscribed_fields": fields,
                })]
            })
            .unwrap_or_default();
        Ok(json!({ "data": data }))
    }

    pub fn unsubscribe(&self, page_id: &str, token: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        Self::subscription_token(&state, page_id, token)?;
        state.subscriptions.remove(page_id);
        Ok(json!({ "success": true }))
    }
}
