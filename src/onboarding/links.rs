//! Onboarding links: a signed, expiring URL an operator sends a client (`switchboard client onboard-link`).
//! `…/api/auth/facebook/start?client=SLUG&expires=UNIX&sig=HEX`, where `sig` is HMAC-SHA256 over
//! `slug|expires` with a key derived from the app secret (so rotating the app secret voids old links).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::domain::ClientSlug;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is incomplete; use the whole link you were sent")]
    Incomplete,
    #[error("this link is not valid (it was changed or is not from us); ask for a new one")]
    BadSignature,
    #[error("this link has expired; ask for a new one")]
    Expired,
}

#[derive(Clone)]
pub struct OnboardLinks {
    key: Hmac<Sha256>,
}

impl OnboardLinks {
    pub fn new(app_secret: &SecretString) -> Self {
        let mut derive = Hmac::<Sha256>::new_from_slice(app_secret.expose_secret().as_bytes()).expect("any key length");
        derive.update(b"switchboard/onboard-link/v1");
        let key = Hmac::<Sha256>::new_from_slice(&derive.finalize().into_bytes()).expect("any key length");
        Self { key }
    }

    fn mac(&self, slug: &str, expires: i64) -> Hmac<Sha256> {
        let mut mac = self.key.clone();
        mac.update(format!("{slug}|{expires}").as_bytes());
        mac
    }

    /// The query string for `slug`, valid until `expires` (unix seconds).
    pub fn sign(&self, slug: &ClientSlug, expires: i64) -> String {
        let sig = hex::encode(self.mac(slug.as_str(), expires).finalize().into_bytes());
        format!("client={slug}&expires={expires}&sig={sig}")
    }

    /// Checks a link's parts against `now` (unix seconds); the signature is compared in constant time.
    pub fn verify(
        &self,
        slug: Option<&str>,
        expires: Option<&str>,
        sig: Option<&str>,
        now: i64,
    ) -> Result<String, LinkError> {
        let (Some(slug), Some(expires), Some(sig)) = (slug, expires, sig) else { return Err(LinkError::Incomplete) };
        let expires: i64 = expires.parse().map_err(|_| LinkError::BadSignature)?;
        let sig = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
        self.mac(slug, expires).verify_slice(&sig).map_err(|_| LinkError::BadSignature)?;
        if expires <= now {
            return Err(LinkError::Expired);
        }
        Ok(slug.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links() -> OnboardLinks {
        OnboardLinks::new(&SecretString::from("app-secret-for-tests".to_owned()))
    }

    fn parts(query: &str) -> Vec<String> {
        query.split('&').map(|kv| kv.split_once('=').unwrap().1.to_owned()).collect()
    }

    #[test]
    fn a_signed_link_verifies_until_it_expires() {
        let q = links().sign(&ClientSlug::parse("acme").unwrap(), 1000);
        let p = parts(&q);
        assert_eq!(links().verify(Some(&p[0]), Some(&p[1]), Some(&p[2]), 999), Ok("acme".to_owned()));
        assert_eq!(links().verify(Some(&p[0]), Some(&p[1]), Some(&p[2]), 1000), Err(LinkError::Expired));
    }

    #[test]
    fn tampered_or_foreign_links_fail() {
        let q = links().sign(&ClientSlug::parse("acme").unwrap(), 1000);
        let p = parts(&q);
        assert_eq!(links().verify(Some("other"), Some(&p[1]), Some(&p[2]), 1), Err(LinkError::BadSignature));
        assert_eq!(links().verify(Some(&p[0]), Some("2000"), Some(&p[2]), 1), Err(LinkError::BadSignature));
        let other = OnboardLinks::new(&SecretString::from("another-secret-value".to_owned()));
        assert_eq!(other.verify(Some(&p[0]), Some(&p[1]), Some(&p[2]), 1), Err(LinkError::BadSignature));
        assert_eq!(links().verify(Some(&p[0]), None, Some(&p[2]), 1), Err(LinkError::Incomplete));
    }
}
