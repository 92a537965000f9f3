//! The `relay` responder: POSTs each normalized event to the client's own bot and sends the replies it
//! returns, so any existing bot can plug in.
//!
//! Request: `POST {url}` with JSON `{"client": slug, "event": {…}}` and
//! `X-Switchboard-Signature-256: sha256=<hex HMAC-SHA256(client's relay secret, body)>`.
//! Answer: 2xx with `{"replies": ["text", …]}` (an empty list answers nothing).
//!
//! A relay URL is chosen by a client's operator, so the server must not be turned against its own network:
//! the URL must be https, and it must not reach a loopback, private, link-local or metadata address. That is
//! checked on the addresses actually connected to (the HTTP client resolves names through [`PublicOnly`], and
//! a literal address is checked before the call), so a name that resolves to a public address when checked
//! and to a private one when connected (DNS rebinding) cannot get around it. No redirect is followed, and an
//! answer is read only up to a size and a reply count. `engine.relay_allow_private` lifts the address and
//! scheme checks (the demo and tests, where the bot runs on loopback).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use async_trait::async_trait;
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use switchboard_actors::{BotAnswer, BotError, InboundEvent, Responder};

pub use crate::config::RelayLimits;

pub const SIGNATURE_HEADER: &str = "x-switchboard-signature-256";

pub struct RelayResponder {
    http: reqwest::Client,
    url: String,
    secret: SecretString,
    client_slug: String,
    limits: RelayLimits,
}

#[derive(Deserialize)]
struct RelayAnswer {
    #[serde(default)]
    replies: Vec<String>,
}

impl RelayResponder {
    pub fn new(
        http: reqwest::Client,
        url: String,
        secret: SecretString,
        client_slug: &str,
        limits: RelayLimits,
    ) -> Self {
        Self { http, url, secret, client_slug: client_slug.to_owned(), limits }
    }
}

/// The HTTP client relay calls use: no redirects, no proxy from the environment, a timeout, and (unless
/// private addresses are allowed) names resolved to public addresses only.
pub fn http_client(timeout: std::time::Duration, limits: RelayLimits) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("switchboard-relay/", env!("CARGO_PKG_VERSION")));
    let builder = if limits.allow_private { builder } else { builder.dns_resolver(PublicOnly) };
    builder.build().expect("a plain HTTP client builds")
}

/// The shortest relay secret accepted, in characters.
pub const MIN_SECRET_CHARS: usize = 16;

/// A relay secret long enough to sign with.
pub fn check_secret(secret: &secrecy::SecretString) -> Result<(), String> {
    if secrecy::ExposeSecret::expose_secret(secret).chars().count() < MIN_SECRET_CHARS {
        return Err(format!("the relay secret must be at least {MIN_SECRET_CHARS} characters"));
    }
    Ok(())
}

/// Checks a relay URL as it is set: https (unless private addresses are allowed) with a host, and, for a
/// literal address, a public one. Names are checked when they are resolved, at each call.
pub fn check_url(url: &str, allow_private: bool) -> Result<url::Url, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_private => {}
        "http" => return Err("must be https (http is allowed only with engine.relay_allow_private)".to_owned()),
        other => return Err(format!("must be an https URL, not {other}:")),
    }
    let host = parsed.host().ok_or_else(|| "has no host".to_owned())?;
    if !allow_private {
        let literal = match host {
            url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
            url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
            url::Host::Domain(_) => None,
        };
        if let Some(ip) = literal.filter(|ip| !is_public(*ip)) {
            return Err(format!("{ip} is not a public address (allowed only with engine.relay_allow_private)"));
        }
    }
    Ok(parsed)
}

/// Whether `ip` is an address on the public internet: not loopback, private, link-local (cloud metadata
/// services live there), shared (CGNAT), multicast, reserved, documentation, or an IPv6 form of one of those.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || ip.is_documentation()
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || ip.is_multicast()
        || a >= 240) // reserved, and broadcast
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // IPv4 inside IPv6: NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach the IPv4 address they carry.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_public_v4(Ipv4Addr::from(u128::from(ip) as u32));
    }
    if segments[0] == 0x2002 {
        let [x, y] = [segments[1], segments[2]];
        return is_public_v4(Ipv4Addr::new((x >> 8) as u8, x as u8, (y >> 8) as u8, y as u8));
    }
    // Only global unicast (2000::/3) is public; everything outside it (IPv4-compatible and SIIT forms,
    // local-use NAT64, site-local, unique local, link-local, multicast, …) is not. Within it, documentation
    // and Teredo are not either.
    (segments[0] & 0xe000) == 0x2000
        && !(segments[0] == 0x2001 && segments[1] == 0x0db8)
        && !(segments[0] == 0x2001 && segments[1] == 0)
}

/// A resolver that answers only with public addresses: a name that resolves to nothing else is an error, so
/// the connection is never made.
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.iter().copied().filter(|a| is_public(a.ip())).collect();
            if public.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address; relay bots must be reachable on the internet"
                )
                .into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// An error and its causes, one after another (reqwest's own message leaves out why a connection failed).
fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let next = cause.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = cause.source();
    }
    text
}

/// `sha256=<hex>` of `body` under `secret`: what a relay bot checks.
pub fn sign(secret: &SecretString, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[async_trait]
impl Responder for RelayResponder {
    async fn respond(&self, event: &InboundEvent) -> Result<BotAnswer, BotError> {
        check_url(&self.url, self.limits.allow_private)
            .map_err(|e| BotError::Unreachable(format!("the relay URL {e}")))?;
        let body = serde_json::to_vec(&serde_json::json!({ "client": self.client_slug, "event": event }))
            .map_err(|e| BotError::Unreachable(e.to_string()))?;
        let mut response = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, sign(&self.secret, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| BotError::Unreachable(format!("relay bot unreachable: {}", causes(&e.without_url()))))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(BotError::BadAnswer(format!("relay bot answered {status}, a redirect, which is not followed")));
        }
        if !status.is_success() {
            return Err(BotError::BadAnswer(format!("relay bot answered {status}")));
        }
        let cap = self.limits.max_answer_bytes;
        let too_large = || BotError::BadAnswer(format!("relay bot's answer is larger than {cap} bytes"));
        if response.content_length().is_some_and(|n| n > cap as u64) {
            return Err(too_large());
        }
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| BotError::BadAnswer(format!("relay bot's answer was cut off: {}", e.without_url())))?
        {
            if answer.len() + chunk.len() > cap {
                return Err(too_large());
            }
            answer.extend_from_slice(&chunk);
        }
        let answer: RelayAnswer = serde_json::from_slice(&answer)
            .map_err(|_| BotError::BadAnswer("relay bot's answer is not {\"replies\": [text, …]}".to_owned()))?;
        let replies: Vec<String> = answer.replies.into_iter().filter(|r| !r.trim().is_empty()).collect();
        if replies.len() > self.limits.max_replies {
            return Err(BotError::BadAnswer(format!(
                "relay bot answered {} replies; at most {} are sent for one message",
                replies.len(),
                self.limits.max_replies
            )));
        }
        Ok(BotAnswer::replies(replies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "192.0.0.192",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "2001:db8::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private} is not public");
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"] {
            assert!(is_public(public.parse().unwrap()), "{public} is public");
        }
    }

    #[test]
    fn relay_urls_must_be_https_and_not_literal_private_addresses() {
        assert!(check_url("https://bot.example.com/hook", false).is_ok());
        assert!(check_url("http://bot.example.com/hook", false).unwrap_err().contains("https"));
        assert!(check_url("https://169.254.169.254/latest", false).unwrap_err().contains("not a public address"));
        assert!(check_url("https://[::1]/", false).unwrap_err().contains("not a public address"));
        assert!(check_url("ftp://bot.example.com/", true).is_err());
        assert!(check_url("http://127.0.0.1:9000/hook", true).is_ok(), "allowed for the demo and tests");
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_private_addresses_is_refused_before_any_connection() {
        use reqwest::dns::Resolve as _;
        let refused = PublicOnly.resolve("localhost".parse().unwrap()).await;
        assert!(refused.is_err_and(|e| e.to_string().contains("no public address")));
    }
}
