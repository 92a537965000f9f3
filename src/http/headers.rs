//! The response headers every answer gets: `X-Content-Type-Options: nosniff` on all, and on every HTML page a
//! strict Content-Security-Policy (no script at all, styles only from this origin, forms only to this origin
//! and Facebook's login dialog, no framing), `Referrer-Policy: no-referrer` (result pages carry signed links)
//! and `Cache-Control: no-store` (pages show one-time passwords and onboarding links). HSTS when the public URL
//! is https.

use warp::http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use warp::reply::Response;

/// The headers, made once from the configuration.
#[derive(Clone)]
pub struct SecurityHeaders {
    csp: HeaderValue,
    hsts: Option<HeaderValue>,
}

impl SecurityHeaders {
    /// `dialog` is Facebook's login dialog (the portal's "Connect with Facebook" form redirects there, and a
    /// form's redirects are held to `form-action`); `https` turns HSTS on.
    pub fn new(dialog: &url::Url, https: bool) -> Self {
        let dialog = dialog.origin().ascii_serialization();
        let csp = format!(
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' {dialog}; \
             frame-ancestors 'none'; base-uri 'none'"
        );
        Self {
            csp: HeaderValue::from_str(&csp).unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'")),
            hsts: https.then(|| HeaderValue::from_static("max-age=31536000")),
        }
    }

    /// Adds the headers to `response` (the HTML ones only to HTML).
    pub fn apply(&self, mut response: Response) -> Response {
        let html = response.headers().get(CONTENT_TYPE).is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
        let headers = response.headers_mut();
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        if let Some(hsts) = &self.hsts {
            headers.insert("strict-transport-security", hsts.clone());
        }
        if html {
            headers.insert("content-security-policy", self.csp.clone());
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
            headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warp::Reply as _;

    #[test]
    fn html_gets_the_strict_set_and_everything_gets_nosniff() {
        let headers = SecurityHeaders::new(&url::Url::parse("https://www.facebook.com").unwrap(), true);
        let page = headers.apply(warp::reply::html("<p>hi</p>").into_response());
        let csp = page.headers()["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("form-action 'self' https://www.facebook.com"), "{csp}");
        assert!(!csp.contains("script-src") && !csp.contains("unsafe-inline"), "no script, no inline anything");
        assert_eq!(page.headers()["cache-control"], "no-store");
        assert_eq!(page.headers()["referrer-policy"], "no-referrer");
        assert_eq!(page.headers()["strict-transport-security"], "max-age=31536000");
        let text = headers.apply("EVENT_RECEIVED".into_response());
        assert_eq!(text.headers()["x-content-type-options"], "nosniff");
        assert!(text.headers().get("content-security-policy").is_none());
        let plain = SecurityHeaders::new(&url::Url::parse("http://127.0.0.1:9000").unwrap(), false);
        assert!(
            plain.apply(warp::reply::html("x").into_response()).headers().get("strict-transport-security").is_none()
        );
    }
}
