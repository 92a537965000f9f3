//! Meta's `signed_request` (deauthorize and data-deletion callbacks): `<b64url(sig)>.<b64url(payload)>`,
//! `sig = HMAC-SHA256(app secret, payload as received)`, raw bytes; the payload is JSON with
//! `algorithm: HMAC-SHA256`, the app-scoped `user_id` and `issued_at`.
//!
//! A request must be fresh: issued within the last [`FRESH_FOR_SECS`] (and not more than [`SKEW_SECS`] in the
//! future), so a captured one cannot be replayed later; within that window the callers refuse a request they
//! have already handled.

use base64::Engine as _;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignedRequestError {
    #[error("signed_request is missing or not of the form signature.payload")]
    Malformed,
    #[error("signed_request signature does not match")]
    BadSignature,
    #[error("signed_request algorithm must be HMAC-SHA256")]
    BadAlgorithm,
    #[error("signed_request payload has no user_id")]
    NoUser,
    #[error("signed_request payload has no issued_at")]
    NoIssuedAt,
    #[error("signed_request was issued too long ago (or in the future); Meta sends a fresh one")]
    Stale,
}

/// How long after `issued_at` a signed_request is accepted: Meta calls back as the person removes the app,
/// so an hour covers its retries with room to spare.
pub const FRESH_FOR_SECS: i64 = 3600;
/// How far in the future `issued_at` may be (clocks differ).
pub const SKEW_SECS: i64 = 300;

/// The verified payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub user_id: String,
    pub issued_at: i64,
    /// What identifies this request: the SHA-256 of its payload as received (the signature covers those exact
    /// bytes, while the signature itself can be written more than one way, with or without `=` padding).
    pub key: [u8; 32],
}

fn b64(input: &str) -> Option<Vec<u8>> {
    let trimmed = input.trim_end_matches('=');
    URL_SAFE_NO_PAD.decode(trimmed).or_else(|_| URL_SAFE.decode(input)).ok()
}

/// Verifies `signed` against any of `secrets` (in constant time), decodes the payload and checks that it was
/// issued recently, as of `now` (unix seconds).
pub fn verify(signed: &str, secrets: &[SecretString], now: i64) -> Result<SignedRequest, SignedRequestError> {
    let (sig, payload) = signed.trim().split_once('.').ok_or(SignedRequestError::Malformed)?;
    let sig = b64(sig).ok_or(SignedRequestError::Malformed)?;
    let mut matched = false;
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()).expect("any key length");
        mac.update(payload.as_bytes());
        matched |= mac.verify_slice(&sig).is_ok();
    }
    if !matched {
        return Err(SignedRequestError::BadSignature);
    }
    let json: serde_json::Value = serde_json::from_slice(&b64(payload).ok_or(SignedRequestError::Malformed)?)
        .map_err(|_| SignedRequestError::Malformed)?;
    if !json["algorithm"].as_str().is_some_and(|a| a.eq_ignore_ascii_case("HMAC-SHA256")) {
        return Err(SignedRequestError::BadAlgorithm);
    }
    let user_id = match &json["user_id"] {
        serde_json::Value::String(s) if !s.is_empty() => s.clone(),
        serde_json::Value::Number(n) => n.to_string(),
        _ => return Err(SignedRequestError::NoUser),
    };
    let issued_at = json["issued_at"]
        .as_i64()
        .or_else(|| json["issued_at"].as_str().and_then(|s| s.parse().ok()))
        .ok_or(SignedRequestError::NoIssuedAt)?;
    if issued_at < now - FRESH_FOR_SECS || issued_at > now + SKEW_SECS {
        return Err(SignedRequestError::Stale);
    }
    let key = <Sha256 as sha2::Digest>::digest(payload.as_bytes()).into();
    Ok(SignedRequest { user_id, issued_at, key })
}

/// Builds a signed_request as Meta does (for tests and the stand-in).
pub fn sign(payload: &serde_json::Value, secret: &str) -> String {
    let payload = URL_SAFE_NO_PAD.encode(payload.to_string());
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(payload.as_bytes());
    format!("{}.{payload}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SECRET: &str = "fixture-app-secret-do-not-use";

    const NOW: i64 = 1291836800;

    fn secrets() -> Vec<SecretString> {
        vec![SecretString::from(SECRET.to_owned())]
    }

    fn verify(signed: &str, secrets: &[SecretString]) -> Result<SignedRequest, SignedRequestError> {
        super::verify(signed, secrets, NOW)
    }

    #[test]
    fn meta_style_requests_verify() {
        let signed = sign(
            &json!({"algorithm":"HMAC-SHA256","expires":1291840400,"issued_at":1291836800,"user_id":"218471"}),
            SECRET,
        );
        let verified = verify(&signed, &secrets()).unwrap();
        assert_eq!((verified.user_id.as_str(), verified.issued_at), ("218471", 1291836800));
        let lower = sign(&json!({"algorithm":"hmac-sha256","user_id":"1","issued_at":NOW}), SECRET);
        assert!(verify(&lower, &secrets()).is_ok(), "the algorithm name is case-insensitive, as in Meta's sample");
    }

    #[test]
    fn an_independent_vector_verifies() {
        // Computed with Python's hmac and base64 modules, not with this code:
        // payload = b64url('{"algorithm":"HMAC-SHA256","user_id":"218471"}'), sig = b64url(HMAC-SHA256(secret, payload)).
        // It carries no issued_at, so it is refused as such, after its signature was found good.
        let signed = "imRzM_OMG4COsD4DVYNFchMRjpnqD77RnNceUPk8_Us.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsInVzZXJfaWQiOiIyMTg0NzEifQ";
        assert_eq!(verify(signed, &secrets()), Err(SignedRequestError::NoIssuedAt));
        let padded = "imRzM_OMG4COsD4DVYNFchMRjpnqD77RnNceUPk8_Us=.eyJhbGdvcml0aG0iOiJITUFDLVNIQTI1NiIsInVzZXJfaWQiOiIyMTg0NzEifQ";
        assert_eq!(verify(padded, &secrets()), Err(SignedRequestError::NoIssuedAt), "padding restored or not");
    }

    #[test]
    fn tampering_and_wrong_algorithms_are_rejected() {
        let signed = sign(&json!({"algorithm":"HMAC-SHA256","user_id":"1","issued_at":NOW}), SECRET);
        let (sig, _) = signed.split_once('.').unwrap();
        let forged = format!("{sig}.{}", URL_SAFE_NO_PAD.encode(r#"{"algorithm":"HMAC-SHA256","user_id":"2"}"#));
        assert_eq!(verify(&forged, &secrets()), Err(SignedRequestError::BadSignature));
        assert_eq!(
            verify(&sign(&json!({"algorithm":"none","user_id":"1","issued_at":NOW}), SECRET), &secrets()),
            Err(SignedRequestError::BadAlgorithm)
        );
        assert_eq!(
            verify(&sign(&json!({"algorithm":"HMAC-SHA256","issued_at":NOW}), SECRET), &secrets()),
            Err(SignedRequestError::NoUser)
        );
        assert_eq!(verify("nodot", &secrets()), Err(SignedRequestError::Malformed));
        assert_eq!(
            verify(&sign(&json!({"algorithm":"HMAC-SHA256","user_id":"1"}), "other-secret"), &secrets()),
            Err(SignedRequestError::BadSignature)
        );
    }

    #[test]
    fn a_request_is_the_same_request_however_its_signature_is_padded() {
        let signed = sign(&json!({"algorithm":"HMAC-SHA256","user_id":"1","issued_at":NOW}), SECRET);
        let (sig, payload) = signed.split_once('.').unwrap();
        let padded = format!("{sig}==.{payload}");
        assert_eq!(verify(&padded, &secrets()).unwrap().key, verify(&signed, &secrets()).unwrap().key);
    }

    #[test]
    fn only_fresh_requests_are_accepted() {
        let at = |issued_at: i64| sign(&json!({"algorithm":"HMAC-SHA256","user_id":"1","issued_at":issued_at}), SECRET);
        assert!(verify(&at(NOW), &secrets()).is_ok());
        assert!(verify(&at(NOW - FRESH_FOR_SECS), &secrets()).is_ok());
        assert_eq!(verify(&at(NOW - FRESH_FOR_SECS - 1), &secrets()), Err(SignedRequestError::Stale));
        assert!(verify(&at(NOW + SKEW_SECS), &secrets()).is_ok());
        assert_eq!(verify(&at(NOW + SKEW_SECS + 1), &secrets()), Err(SignedRequestError::Stale));
        let as_text = sign(&json!({"algorithm":"HMAC-SHA256","user_id":"1","issued_at":NOW.to_string()}), SECRET);
        assert!(verify(&as_text, &secrets()).is_ok(), "issued_at as a numeric string, as Meta sends every field");
    }
}
