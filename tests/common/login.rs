//! A person's side of Facebook Login against the stand-in, for the tests that connect Pages the way a client
//! does: open the onboarding link, press a button on the stand-in's consent page. Shared by the integration
//! suite and the chaos run (each includes this file).

#![allow(dead_code)]

use std::collections::HashMap;

/// Opens an onboarding link in `browser` (which keeps cookies and follows no redirect) and presses "Continue
/// to Facebook" on the page it shows: the dialog URL it leads to.
pub async fn begin(browser: &reqwest::Client, link: &str) -> Result<url::Url, String> {
    let resp = press_continue(browser, link).await?;
    match resp.status().as_u16() {
        302 => resp
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url::Url::parse(l).ok())
            .ok_or_else(|| "start redirected nowhere".to_owned()),
        status => Err(format!("start answered {status}: {}", resp.text().await.unwrap_or_default())),
    }
}

/// Opens an onboarding link and presses the start page's button: the answer to that POST.
pub async fn press_continue(browser: &reqwest::Client, link: &str) -> Result<reqwest::Response, String> {
    let resp = browser.get(link).send().await.map_err(|e| e.without_url().to_string())?;
    let status = resp.status().as_u16();
    let page = resp.text().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("the link answered {status}: {page}"));
    }
    let url = url::Url::parse(link).map_err(|e| e.to_string())?;
    let origin = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
        + &url.port().map(|p| format!(":{p}")).unwrap_or_default();
    browser
        .post(format!("{origin}/api/auth/facebook/start"))
        .form(&hidden_fields(&page))
        .send()
        .await
        .map_err(|e| e.without_url().to_string())
}

/// The hidden fields of a page's form, as (name, value).
pub fn hidden_fields(page: &str) -> Vec<(String, String)> {
    page.split("<input")
        .skip(1)
        .filter(|tag| tag.contains("type=\"hidden\""))
        .filter_map(|tag| {
            let attr = |name: &str| {
                let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
                let end = tag[start..].find('"')? + start;
                Some(tag[start..end].replace("&amp;", "&").replace("&quot;", "\""))
            };
            Some((attr("name")?, attr("value")?))
        })
        .collect()
}

/// Presses `decision` on the stand-in's consent page for the dialog at `dialog`, ticking `pages` and `scopes`
/// (every requested permission when `None`); the redirect back to the callback.
pub async fn decide(
    http: &reqwest::Client,
    dialog: &url::Url,
    pages: &[&str],
    scopes: Option<&[&str]>,
    decision: &str,
) -> Result<String, String> {
    let q: HashMap<String, String> = dialog.query_pairs().into_owned().collect();
    let field = |k: &str| q.get(k).cloned().ok_or_else(|| format!("the dialog URL has no {k}"));
    let (client_id, redirect_uri, state, scope) =
        (field("client_id")?, field("redirect_uri")?, field("state")?, field("scope")?);
    let mut form: Vec<(&str, &str)> = vec![
        ("client_id", &client_id),
        ("redirect_uri", &redirect_uri),
        ("state", &state),
        ("requested", &scope),
        ("decision", decision),
    ];
    form.extend(pages.iter().map(|p| ("page", *p)));
    match scopes {
        Some(scopes) => form.extend(scopes.iter().map(|s| ("scope", *s))),
        None => form.extend(scope.split(',').map(|s| ("scope", s))),
    }
    let base = format!("{}://{}", dialog.scheme(), dialog.host_str().unwrap_or_default());
    let port = dialog.port().map(|p| format!(":{p}")).unwrap_or_default();
    let resp = http
        .post(format!("{base}{port}/v25.0/dialog/oauth/decide"))
        .form(&form)
        .send()
        .await
        .map_err(|e| e.without_url().to_string())?;
    if resp.status().as_u16() != 302 {
        return Err(format!("the consent page answered {}", resp.status()));
    }
    Ok(resp.headers()["location"].to_str().map_err(|e| e.to_string())?.to_owned())
}
