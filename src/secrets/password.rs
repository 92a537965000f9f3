//! Portal passwords: argon2id with OWASP's minimum parameters (m = 19 MiB, t = 2, p = 1, the crate's
//! defaults, pinned here so a dependency bump cannot weaken them). Hashing is CPU- and memory-heavy, so it
//! runs on the blocking pool, never on an async worker. Verification compares in constant time.

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};

/// Shortest password accepted for a portal account. Length beats composition rules (NIST SP 800-63B).
pub const MIN_LEN: usize = 12;
/// Longest password accepted: argon2 takes any length, the bound keeps hashing cost predictable.
pub const MAX_LEN: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_LEN} characters")]
    TooShort,
    #[error("password must be at most {MAX_LEN} bytes")]
    TooLong,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("stored password hash is not a valid PHC string")]
    BadStoredHash,
}

fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("OWASP argon2id parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Checks the length rules on a candidate password.
pub fn check_policy(password: &SecretString) -> Result<(), PasswordError> {
    let pw = password.expose_secret();
    if pw.chars().count() < MIN_LEN {
        return Err(PasswordError::TooShort);
    }
    if pw.len() > MAX_LEN {
        return Err(PasswordError::TooLong);
    }
    Ok(())
}

/// Hashes run at once at most: each takes 19 MiB and a core for tens of milliseconds, so sign-in attempts
/// from many addresses queue here rather than exhaust memory.
static AT_ONCE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(4);

/// Hashes a password to a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) with a random salt.
pub async fn hash(password: SecretString) -> Result<String, PasswordError> {
    check_policy(&password)?;
    let _turn = AT_ONCE.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.expose_secret().as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| PasswordError::Hash(e.to_string()))
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

/// True when `password` matches `stored`, after waiting for a turn among the hashes that run at once. The
/// parameters come from the stored hash, so raising the defaults later keeps old hashes verifiable.
pub async fn verify(password: SecretString, stored: String) -> Result<bool, PasswordError> {
    let _turn = AT_ONCE.acquire().await.map_err(|e| PasswordError::Hash(e.to_string()))?;
    check(password, stored).await
}

/// [`verify`] for a caller that decides itself how many run at once (sign-in keeps lanes of its own).
pub async fn check(password: SecretString, stored: String) -> Result<bool, PasswordError> {
    if password.expose_secret().len() > MAX_LEN {
        return Ok(false);
    }
    tokio::task::spawn_blocking(move || {
        match argon2().verify_password(password.expose_secret().as_bytes(), stored.as_str()) {
            Ok(()) => Ok(true),
            Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
            Err(_) => Err(PasswordError::BadStoredHash),
        }
    })
    .await
    .map_err(|e| PasswordError::Hash(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let stored = hash(secret("correct horse battery")).await.unwrap();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        assert!(verify(secret("correct horse battery"), stored.clone()).await.unwrap());
        assert!(!verify(secret("correct horse battery!"), stored).await.unwrap());
    }

    #[tokio::test]
    async fn short_passwords_are_refused() {
        assert!(matches!(hash(secret("short")).await, Err(PasswordError::TooShort)));
    }

    #[tokio::test]
    async fn garbage_stored_hash_is_an_error_not_a_match() {
        assert!(matches!(
            verify(secret("whatever-long-enough"), "nope".into()).await,
            Err(PasswordError::BadStoredHash)
        ));
    }
}
