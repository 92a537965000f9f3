//! `ClientSlug`: the stable, URL-safe handle of a tenant (`woodstock-outlet`).

use std::fmt;

const MAX_LEN: usize = 48;

/// Lowercase ASCII letters and digits in groups joined by single hyphens, 1 to 48 characters.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ClientSlug(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientSlugError {
    #[error("slug is empty")]
    Empty,
    #[error("slug is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("slug may contain only lowercase letters a-z, digits and single hyphens between them (like `rural-king`)")]
    BadCharacters,
    #[error("name {0:?} has no letters or digits to make a slug from; pass --slug")]
    NothingToSlugify(String),
}

impl ClientSlug {
    pub fn parse(raw: &str) -> Result<Self, ClientSlugError> {
        if raw.is_empty() {
            return Err(ClientSlugError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(ClientSlugError::TooLong);
        }
        let well_formed = raw
            .split('-')
            .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        if !well_formed {
            return Err(ClientSlugError::BadCharacters);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Derives a slug from a display name: "Rural King, Inc." → `rural-king-inc`. Letters outside ASCII are
    /// dropped rather than transliterated; pass an explicit slug when that gives a poor result.
    pub fn from_name(name: &str) -> Result<Self, ClientSlugError> {
        let mut slug = String::with_capacity(name.len());
        for c in name.chars() {
            if c.is_ascii_alphanumeric() {
                slug.push(c.to_ascii_lowercase());
            } else if !slug.is_empty() && !slug.ends_with('-') {
                slug.push('-');
            }
        }
        slug.truncate(MAX_LEN);
        let slug = slug.trim_end_matches('-');
        if slug.is_empty() {
            return Err(ClientSlugError::NothingToSlugify(name.to_owned()));
        }
        Self::parse(slug)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClientSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for ClientSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientSlug({})", self.0)
    }
}

impl std::str::FromStr for ClientSlug {
    type Err = ClientSlugError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_is_derived_from_a_display_name() {
        assert_eq!(ClientSlug::from_name("Woodstock Outlet").unwrap().as_str(), "woodstock-outlet");
        assert_eq!(ClientSlug::from_name("  Rural King, Inc. ").unwrap().as_str(), "rural-king-inc");
        assert_eq!(ClientSlug::from_name("Café №1").unwrap().as_str(), "caf-1");
        assert!(matches!(ClientSlug::from_name("¡¿!"), Err(ClientSlugError::NothingToSlugify(_))));
    }

    #[test]
    fn malformed_slugs_are_rejected() {
        for bad in ["", "Upper", "a--b", "-a", "a-", "a b", "a_b", &"a".repeat(49)] {
            assert!(ClientSlug::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(ClientSlug::parse("rural-king-2").is_ok());
    }
}
