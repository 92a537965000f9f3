//! The Handover Protocol (meta-platform.md §5.3): an app passes a conversation to the Page Inbox (or the
//! Instagram Inbox), and a person at the business marks it done, which passes it back to the app. The
//! stand-in keeps who owns each conversation; the app learns that the conversation came back through a
//! `pass_thread_control` webhook (posted by the control API).

use serde_json::{Value, json};

use super::*;
use crate::config::SimPage;
use crate::webhook::{INSTAGRAM_INBOX_APP_ID, PAGE_INBOX_APP_ID};

impl Sim {
    /// `POST /{page-id}/pass_thread_control` (or `/me/…`) with the Page token:
    /// `{"recipient":{"id":…},"target_app_id":…,"metadata":…}` → `{"success":true}`.
    pub fn pass_thread_control(&self, path_id: &str, token: &str, body: &Value) -> Result<Value, GraphError> {
        let mut state = self.lock();
        let (page, recipient) = handover_call(&state, path_id, token, body)?;
        let target = body["target_app_id"]
            .as_str()
            .and_then(|t| t.parse::<u64>().ok())
            .or_else(|| body["target_app_id"].as_u64())
            .ok_or_else(|| GraphError::invalid_parameter("(#100) target_app_id is required"))?;
        let instagram = state.instagram_users.contains(&recipient);
        let inbox = if instagram { INSTAGRAM_INBOX_APP_ID } else { PAGE_INBOX_APP_ID };
        if target != inbox {
            return Err(GraphError::invalid_parameter("(#100) target_app_id is not a secondary receiver of this Page"));
        }
        state.threads.insert(format!("{}:{recipient}", page.id), target.to_string());
        Ok(json!({ "success": true }))
    }

    /// `POST /{page-id}/take_thread_control` with the Page token: `{"recipient":{"id":…},"metadata":…}` →
    /// `{"success":true}`. The app (the Page's primary receiver) takes the conversation back from whichever app
    /// has it; taking one it already has succeeds too.
    pub fn take_thread_control(&self, path_id: &str, token: &str, body: &Value) -> Result<Value, GraphError> {
        let mut state = self.lock();
        let (page, recipient) = handover_call(&state, path_id, token, body)?;
        let app = state.config.app_id.clone();
        state.threads.insert(format!("{}:{recipient}", page.id), app);
        Ok(json!({ "success": true }))
    }

    /// Who owns each conversation that was ever passed: `{"page:recipient": app id}`.
    pub fn thread_owners(&self) -> Value {
        json!(self.lock().threads)
    }

    /// A person marks the conversation with `recipient` done in the inbox: it goes back to the app, which
    /// gets a `pass_thread_control` webhook. The body Meta sends and its signature, or why not.
    pub fn inbox_done(&self, page_id: &str, recipient: &str) -> Result<(Vec<u8>, String), String> {
        let mut state = self.lock();
        let key = format!("{page_id}:{recipient}");
        let previous =
            state.threads.get(&key).cloned().ok_or_else(|| format!("no conversation of {key} was passed"))?;
        let app = state.config.app_id.clone();
        state.threads.insert(key, app.clone());
        let instagram = state.instagram_users.contains(recipient);
        let page = state.config.page(page_id).ok_or_else(|| format!("no page {page_id}"))?;
        let (object, account) = match (&page.instagram_business_account, instagram) {
            (Some(ig), true) => ("instagram", ig.clone()),
            _ => ("page", page.id.clone()),
        };
        let ts = unix_now_ms();
        let body = json!({ "object": object, "entry": [{ "id": account, "time": ts, "messaging": [{
            "sender": { "id": recipient }, "recipient": { "id": account }, "timestamp": ts,
            "pass_thread_control": { "previous_owner_app_id": previous, "new_owner_app_id": app,
                "metadata": "Marked done in the inbox" } }] }] });
        let body = crate::webhook::to_meta_json(&body);
        Ok((body.clone(), crate::webhook::signature(&state.config.app_secret, &body)))
    }
}

/// A Handover Protocol call's Page (checked against the token and the path) and recipient.
fn handover_call(state: &State, path_id: &str, token: &str, body: &Value) -> Result<(SimPage, String), GraphError> {
    let info = state.valid_token(token)?;
    let TokenKind::Page { page_id } = &info.kind else {
        return Err(GraphError::permission(210, "(#210) A page access token is required to request this resource."));
    };
    let page = state.config.page(page_id).cloned().ok_or_else(|| GraphError::not_found(page_id))?;
    if path_id != "me" && path_id != page.id {
        return Err(GraphError::not_found(path_id));
    }
    let recipient = body["recipient"]["id"].as_str().filter(|r| !r.is_empty()).ok_or_else(|| {
        GraphError::invalid_parameter("(#100) The parameter recipient is required and must be {id: <PSID or IGSID>}")
    })?;
    Ok((page, recipient.to_owned()))
}
