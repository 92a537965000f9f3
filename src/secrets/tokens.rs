//! Random tokens (session ids, CSRF tokens, OAuth states, browser bindings), the SHA-256 that is stored in
//! their place, and constant-time comparison.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// 256 random bits, URL-safe (43 characters).
pub fn random_token() -> String {
    let mut raw = [0u8; 32];
    getrandom::fill(&mut raw).expect("the OS random source is available");
    URL_SAFE_NO_PAD.encode(raw)
}

/// Whether `value` looks like a [`random_token`] (43 URL-safe characters).
pub fn is_token(value: &str) -> bool {
    value.len() == 43 && value.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// SHA-256 of a token: what is stored (the token itself never is).
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Constant-time equality of two tokens.
pub fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
