//! `ClientName`: a business's display name, as an operator types it (CLI or portal): trimmed, 1 to 200
//! characters, no control characters.

use std::fmt;

const MAX_CHARS: usize = 200;

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ClientName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to {MAX_CHARS} characters, without control characters")]
pub struct ClientNameError;

impl ClientName {
    pub fn parse(raw: &str) -> Result<Self, ClientNameError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > MAX_CHARS || name.chars().any(char::is_control) {
            return Err(ClientNameError);
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(ClientName::parse("  Rural King ").unwrap().as_str(), "Rural King");
        assert!(ClientName::parse("   ").is_err());
        assert!(ClientName::parse(&"x".repeat(201)).is_err());
        assert!(ClientName::parse(&"é".repeat(200)).is_ok(), "characters, not bytes");
        assert!(ClientName::parse("Bad\nName").is_err());
    }
}
