//! The OAuth dialog's decisions, code and token exchanges, `debug_token`, `/me/permissions` and `/me/accounts`.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

impl Sim {
    /// Checks what the dialog is given: the app id and a registered redirect URI.
    pub fn check_dialog(&self, client_id: &str, redirect_uri: &str) -> Result<SimConfigView, String> {
        let state = self.lock();
        if client_id != state.config.app_id {
            return Err("Invalid App ID: the provided app ID does not look like a valid app ID.".to_owned());
        }
        if !state.config.redirect_uris.iter().any(|u| u == redirect_uri) {
            return Err("URL blocked: this redirect failed because the redirect URI is not whitelisted in the app's client OAuth settings.".to_owned());
        }
        let user = state.config.user(&state.config.active_user).cloned();
        Ok(SimConfigView { user })
    }

    /// The user decided in the dialog: a code to redirect with, or `None` for Cancel.
    pub fn decide(&self, redirect_uri: &str, requested: &[String], decision: Decision) -> Option<String> {
        let Decision::Continue { scopes, pages } = decision else { return None };
        let mut state = self.lock();
        let user_id = state.config.active_user.clone();
        let granted: Vec<String> = requested.iter().filter(|s| scopes.contains(s)).cloned().collect();
        let declined: Vec<String> = requested.iter().filter(|s| !scopes.contains(s)).cloned().collect();
        let owned: Vec<String> =
            state.config.user(&user_id).map(|u| u.pages.iter().map(|p| p.id.clone()).collect()).unwrap_or_default();
        let pages = pages.into_iter().filter(|p| owned.contains(p)).collect();
        let code = random_token("AQ", 48);
        state.codes.insert(
            code.clone(),
            CodeInfo {
                user_id,
                redirect_uri: redirect_uri.to_owned(),
                scopes: granted,
                declined,
                pages,
                created: Instant::now(),
                used: false,
            },
        );
        Some(code)
    }

    /// `GET /oauth/access_token` with a code: a short-lived user token.
    pub fn exchange_code(
        &self,
        client_id: &str,
        client_secret: &str,
        redirect_uri: &str,
        code: &str,
    ) -> Result<Value, GraphError> {
        let mut state = self.lock();
        check_client(&state.config, client_id, client_secret)?;
        let ttl = Duration::from_secs(state.config.code_ttl_secs);
        let info = state
            .codes
            .get_mut(code)
            .ok_or_else(|| GraphError::oauth(100, Some(36_009), "Invalid verification code format."))?;
        if info.used {
            return Err(GraphError::oauth(100, Some(36_009), "This authorization code has been used."));
        }
        if info.created.elapsed() > ttl {
            return Err(GraphError::oauth(100, Some(36_007), "This authorization code has expired."));
        }
        if info.redirect_uri != redirect_uri {
            return Err(GraphError::oauth(
                100,
                Some(36_008),
                "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            ));
        }
        info.used = true;
        let token = TokenInfo {
            kind: TokenKind::User { long_lived: false },
            user_id: info.user_id.clone(),
            scopes: info.scopes.clone(),
            declined: info.declined.clone(),
            pages: info.pages.clone(),
            issued_at: unix_now(),
            expires_at: Some(unix_now() + SHORT_LIVED_SECS),
            revoked: None,
        };
        let access_token = random_token("EAAU", 64);
        state.tokens.insert(access_token.clone(), token);
        Ok(json!({ "access_token": access_token, "token_type": "bearer", "expires_in": SHORT_LIVED_SECS }))
    }

    /// `grant_type=fb_exchange_token`: a long-lived user token (a different string) for a valid one.
    pub fn exchange_long_lived(&self, client_id: &str, client_secret: &str, token: &str) -> Result<Value, GraphError> {
        let mut state = self.lock();
        check_client(&state.config, client_id, client_secret)?;
        let info = state.valid_token(token)?.clone();
        if !matches!(info.kind, TokenKind::User { .. }) {
            return Err(GraphError::oauth(100, None, "fb_exchange_token must be a user access token"));
        }
        let access_token = random_token("EAAL", 64);
        state.tokens.insert(
            access_token.clone(),
            TokenInfo {
                kind: TokenKind::User { long_lived: true },
                issued_at: unix_now(),
                expires_at: Some(unix_now() + LONG_LIVED_SECS),
                ..info
            },
        );
        Ok(json!({ "access_token": access_token, "token_type": "bearer", "expires_in": LONG_LIVED_SECS }))
    }

    /// `GET /debug_token`: `access_token` must be the app token `{app-id}|{app-secret}`.
    pub fn debug_token(&self, app_token: Option<&str>, input: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let expected = format!("{}|{}", state.config.app_id, state.config.app_secret);
        if app_token != Some(expected.as_str()) {
            return Err(GraphError::invalid_token(467));
        }
        let Some(info) = state.tokens.get(input) else {
            return Ok(json!({ "data": {
                "error": { "code": 190, "message": "Invalid OAuth access token." },
                "is_valid": false, "scopes": [] } }));
        };
        let (kind, profile) = match &info.kind {
            TokenKind::User { .. } => ("USER", None),
            TokenKind::Page { page_id } => ("PAGE", Some(page_id.clone())),
        };
        let granular: Vec<Value> = info
            .scopes
            .iter()
            .map(|scope| {
                if scope.starts_with("pages_") || scope.starts_with("instagram_") {
                    json!({ "scope": scope, "target_ids": info.pages })
                } else {
                    json!({ "scope": scope })
                }
            })
            .collect();
        let mut data = json!({
            "app_id": state.config.app_id,
            "type": kind,
            "application": "Switchboard (meta-sim)",
            "data_access_expires_at": info.issued_at + 90 * 86_400,
            "expires_at": info.expires_at.unwrap_or(0),
            "is_valid": state.validity(info).is_ok(),
            "issued_at": info.issued_at,
            "scopes": info.scopes,
            "granular_scopes": granular,
            "user_id": info.user_id,
        });
        if let Some(page) = profile {
            data["profile_id"] = json!(page);
        }
        if let Err(e) = state.validity(info) {
            data["error"] = json!({ "code": e.code, "subcode": e.error_subcode, "message": e.message });
        }
        Ok(json!({ "data": data }))
    }

    /// `GET /me/permissions` with a user token.
    pub fn permissions(&self, token: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let info = state.valid_token(token)?;
        let granted = info.scopes.iter().map(|p| json!({ "permission": p, "status": "granted" }));
        let declined = info.declined.iter().map(|p| json!({ "permission": p, "status": "declined" }));
        Ok(json!({ "data": granted.chain(declined).collect::<Vec<_>>() }))
    }

    /// `GET /me/accounts`: the Pages the user granted, each with a Page token, a page of results at a time.
    pub fn accounts(
        &self,
        token: &str,
        after: Option<&str>,
        limit: Option<usize>,
        next_base: &str,
    ) -> Result<Value, GraphError> {
        let mut state = self.lock();
        let info = state.valid_token(token)?.clone();
        let TokenKind::User { long_lived } = info.kind else {
            return Err(GraphError::oauth(
                100,
                None,
                "(#100) Tried accessing nonexisting field (accounts) on node type (Page)",
            ));
        };
        if !info.scopes.iter().any(|s| s == "pages_show_list") {
            return Err(GraphError::permission(200, "(#200) Requires pages_show_list permission"));
        }
        let size = limit.unwrap_or(state.config.accounts_page_size).clamp(1, 100);
        let start = match after {
            Some(cursor) => {
                decode_cursor(cursor).ok_or_else(|| GraphError::invalid_parameter("(#100) Invalid cursor"))?
            }
            None => 0,
        };
        let user = state.config.user(&info.user_id).cloned();
        let pages: Vec<_> =
            user.map(|u| u.pages.into_iter().filter(|p| info.pages.contains(&p.id)).collect()).unwrap_or_default();
        let mut data = Vec::new();
        for page in pages.iter().skip(start).take(size) {
            let page_token = random_token("EAAP", 64);
            state.tokens.insert(
                page_token.clone(),
                TokenInfo {
                    kind: TokenKind::Page { page_id: page.id.clone() },
                    issued_at: unix_now(),
                    // A Page token from a long-lived user token has no expiry; from a short-lived one it
                    // dies with it.
                    expires_at: if long_lived { None } else { info.expires_at },
                    ..info.clone()
                },
            );
            data.push(json!({
                "access_token": page_token,
                "category": "Retail Company",
                "category_list": [{ "id": "2500", "name": "Retail Company" }],
                "name": page.name,
                "id": page.id,
                "tasks": page.tasks,
            }));
        }
        let end = start + data.len();
        let mut paging = json!({ "cursors": { "before": encode_cursor(start), "after": encode_cursor(end) } });
        if end < pages.len() {
            paging["next"] =
                json!(format!("{next_base}?access_token={token}&limit={size}&after={}", encode_cursor(end)));
        }
        Ok(json!({ "data": data, "paging": paging }))
    }

    /// `GET /{page-id}?fields=…`: the Page's id, name and linked Instagram account.
    pub fn page_fields(&self, page_id: &str, token: &str, fields: &str) -> Result<Value, GraphError> {
        let state = self.lock();
        let info = state.valid_token(token)?;
        let allowed = match &info.kind {
            TokenKind::Page { page_id: own } => own == page_id,
            TokenKind::User { .. } => info.pages.iter().any(|p| p == page_id),
        };
        let page = state.config.page(page_id).filter(|p| p.id == page_id && allowed);
        let Some(page) = page else { return Err(GraphError::not_found(page_id)) };
        let mut out = json!({ "id": page.id });
        for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            match field {
                "id" => {}
                "name" => out["name"] = json!(page.name),
                "instagram_business_account" => {
                    if !info.scopes.iter().any(|s| s == "instagram_basic") {
                        return Err(GraphError::permission(10, "(#10) Requires instagram_basic permission"));
                    }
                    if let Some(ig) = &page.instagram_business_account {
                        out["instagram_business_account"] = json!({ "id": ig });
                    }
                }
                other => {
                    return Err(GraphError::invalid_parameter(&format!(
                        "(#100) Tried accessing nonexisting field ({other}) on node type (Page)"
                    )));
                }
            }
        }
        Ok(out)
    }

    /// Checks an `appsecret_proof` for `token` (required when "Require App Secret" is on).
    pub fn check_proof(&self, token: &str, proof: Option<&str>, time: Option<&str>) -> Result<(), GraphError> {
        self.lock().check_proof(token, proof, time)
    }
}

fn check_client(config: &SimConfig, client_id: &str, client_secret: &str) -> Result<(), GraphError> {
    if client_id != config.app_id {
        return Err(GraphError::oauth(101, None, "Error validating application. Invalid application ID."));
    }
    if client_secret != config.app_secret {
        return Err(GraphError::oauth(1, None, "Error validating client secret."));
    }
    Ok(())
}

fn encode_cursor(index: usize) -> String {
    hex::encode(format!("cursor:{index}"))
}

fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    raw.strip_prefix("cursor:")?.parse().ok()
}
