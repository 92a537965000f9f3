//! `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, checked in constant time against
//! each configured app secret (several while the app secret is being rotated).

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    #[error("X-Hub-Signature-256 is not of the form sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Hub-Signature-256 does not match the body")]
    Mismatch,
}

/// The app secrets webhooks may be signed with. Never empty (start-up refuses an empty list).
#[derive(Clone)]
pub struct WebhookSecrets {
    keys: Vec<Hmac<Sha256>>,
}

impl std::fmt::Debug for WebhookSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookSecrets([redacted] × {})", self.keys.len())
    }
}

impl WebhookSecrets {
    pub fn new(secrets: &[SecretString]) -> Self {
        let keys = secrets
            .iter()
            .map(|s| {
                Hmac::<Sha256>::new_from_slice(s.expose_secret().as_bytes()).expect("HMAC takes keys of any length")
            })
            .collect();
        Self { keys }
    }

    /// Checks `header` against `body`, exactly as received.
    pub fn verify(&self, header: Option<&[u8]>, body: &[u8]) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digits = header.strip_prefix(b"sha256=").ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut expected).map_err(|_| SignatureError::Malformed)?;
        let mut matched = false;
        for key in &self.keys {
            let mut mac = key.clone();
            mac.update(body);
            // verify_slice compares in constant time; every secret is tried so timing does not tell which.
            matched |= mac.verify_slice(&expected).is_ok();
        }
        if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "fixture-app-secret-do-not-use";

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/webhooks/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn secrets(list: &[&str]) -> WebhookSecrets {
        WebhookSecrets::new(&list.iter().map(|s| SecretString::from((*s).to_owned())).collect::<Vec<_>>())
    }

    #[test]
    fn fixture_signatures_verify_over_the_raw_bytes() {
        let unicode = fixture("messenger_unicode.json");
        let sig = b"sha256=71d76bb84e04c66c7d32f995b73688c2c6ab54ddfef8c1d904a7d77f802b1c55";
        assert_eq!(secrets(&[SECRET]).verify(Some(sig), &unicode), Ok(()));
        // Re-serializing the JSON (unescaping the unicode) breaks the signature, as it does at Meta.
        let reserialized = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&unicode).unwrap()).unwrap();
        assert_eq!(secrets(&[SECRET]).verify(Some(sig), &reserialized), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_configured_secret_is_accepted_during_rotation() {
        let body = fixture("messenger_text.json");
        let sig = b"sha256=0ea90396ae927e9dd6c85ebcbf37e079e1215ca1a2ca38bb01929538547a3b6e";
        assert_eq!(secrets(&["new-secret-value-123", SECRET]).verify(Some(sig), &body), Ok(()));
        assert_eq!(secrets(&["new-secret-value-123"]).verify(Some(sig), &body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn missing_and_malformed_headers_are_told_apart() {
        let s = secrets(&[SECRET]);
        assert_eq!(s.verify(None, b"{}"), Err(SignatureError::Missing));
        assert_eq!(s.verify(Some(b"sha1=abc"), b"{}"), Err(SignatureError::Malformed));
        assert_eq!(s.verify(Some(b"sha256=zz"), b"{}"), Err(SignatureError::Malformed));
        assert_eq!(s.verify(Some(b"sha256=00"), b"{}"), Err(SignatureError::Malformed));
        assert!(!format!("{s:?}").contains(SECRET));
    }
}
