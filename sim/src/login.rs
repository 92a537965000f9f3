//! What an app does to get Page tokens from the stand-in, for tests and benchmarks that need working
//! tokens without a browser: the consent dialog's "Continue" with every known permission and the given
//! Pages, the code exchange, then `/me/accounts` (followed through every page of results).

use std::collections::HashMap;

use hmac::{Hmac, KeyInit as _, Mac as _};
use serde_json::Value;
use sha2::Sha256;

use crate::config::KNOWN_SCOPES;

/// Page tokens by page id. `redirect_uri` must be one of the stand-in's registered redirect URIs.
pub async fn page_tokens(
    sim_url: &str,
    app_id: &str,
    app_secret: &str,
    redirect_uri: &str,
    pages: &[&str],
) -> Result<HashMap<String, String>, String> {
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().map_err(|e| e.to_string())?;
    let base = format!("{sim_url}/v25.0");
    let scopes = KNOWN_SCOPES.join(",");
    let mut form: Vec<(&str, &str)> =
        vec![("client_id", app_id), ("redirect_uri", redirect_uri), ("requested", &scopes), ("decision", "continue")];
    form.extend(KNOWN_SCOPES.iter().map(|s| ("scope", *s)));
    form.extend(pages.iter().map(|p| ("page", *p)));
    let resp = http.post(format!("{base}/dialog/oauth/decide")).form(&form).send().await.map_err(|e| e.to_string())?;
    let location = resp
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .and_then(|l| url::Url::parse(l).ok())
        .ok_or("the dialog did not redirect")?;
    let code = location.query_pairs().find(|(k, _)| k == "code").ok_or("no code in the redirect")?.1.into_owned();
    let token = json(http.get(format!("{base}/oauth/access_token")).query(&[
        ("client_id", app_id),
        ("client_secret", app_secret),
        ("redirect_uri", redirect_uri),
        ("code", &code),
    ]))
    .await?;
    let user = token["access_token"].as_str().ok_or("no access_token")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(app_secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(user.as_bytes());
    let proof = hex::encode(mac.finalize().into_bytes());
    let mut tokens = HashMap::new();
    let mut next = Some(format!("{base}/me/accounts"));
    let mut query = vec![("access_token", user.to_owned()), ("appsecret_proof", proof)];
    while let Some(url) = next.take() {
        let accounts = json(http.get(&url).query(&query)).await?;
        for page in accounts["data"].as_array().ok_or("no data in /me/accounts")? {
            if let (Some(id), Some(token)) = (page["id"].as_str(), page["access_token"].as_str()) {
                tokens.insert(id.to_owned(), token.to_owned());
            }
        }
        if let Some(after) =
            accounts["paging"]["cursors"]["after"].as_str().filter(|_| accounts["paging"]["next"].is_string())
        {
            query.retain(|(k, _)| *k != "after");
            query.push(("after", after.to_owned()));
            next = Some(format!("{base}/me/accounts"));
        }
    }
    Ok(tokens)
}

async fn json(request: reqwest::RequestBuilder) -> Result<Value, String> {
    // Without the URL: its query carries tokens.
    let plain = |e: reqwest::Error| e.without_url().to_string();
    request.send().await.map_err(plain)?.json().await.map_err(plain)
}
