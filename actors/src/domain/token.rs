//! `AccessToken`: a decrypted Page access token held in memory.
//!
//! The token is the key to a client's Page. It lives in a zeroizing buffer (wiped when dropped, including
//! when an actor panics and its state is dropped without `post_stop`), prints as `[redacted]`, and is
//! neither `Serialize` nor `Clone`-by-accident into logs: the only way to read it is [`AccessToken::expose`].

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A Page (or user) access token. Debug and Display print `[redacted]`.
#[derive(Clone)]
pub struct AccessToken(SecretString);

impl AccessToken {
    /// Wraps a token; the `String`'s buffer is moved, not copied, and zeroized on drop.
    pub fn new(token: String) -> Self {
        Self(SecretString::from(token))
    }

    /// The token itself, for the one place that must put it on the wire.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_token() {
        let token = AccessToken::new("EAAGsecretvalue".to_owned());
        assert_eq!(format!("{token:?}"), "[redacted]");
        assert_eq!(format!("{token}"), "[redacted]");
        assert_eq!(format!("{:?}", Some(&token)), "Some([redacted])");
        assert_eq!(token.expose(), "EAAGsecretvalue");
    }
}
