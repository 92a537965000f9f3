//! `PageId`: the routing key of a tenant.
//!
//! Meta identifies a Facebook Page and an Instagram professional account by a decimal id (`entry[].id` in a
//! webhook). Anything that is not such an id is rejected at the edge, so past it no code holds a bad one.

use std::fmt;

/// The longest id we accept. Meta's ids are 15–17 digits today; the slack is for growth, the bound is so
/// that a hostile payload cannot make us store or hash megabytes as a "page id".
const MAX_LEN: usize = 32;

/// A Facebook Page id or Instagram account id: 1 to 32 ASCII digits.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct PageId(String);

/// Why a string is not a [`PageId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PageIdError {
    #[error("page id is empty")]
    Empty,
    #[error("page id is longer than {MAX_LEN} characters")]
    TooLong,
    #[error("page id must contain only the digits 0-9")]
    NotDigits,
}

impl PageId {
    /// Parses a page id, rejecting anything but 1 to 32 ASCII digits.
    pub fn parse(raw: &str) -> Result<Self, PageIdError> {
        if raw.is_empty() {
            return Err(PageIdError::Empty);
        }
        if raw.len() > MAX_LEN {
            return Err(PageIdError::TooLong);
        }
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PageIdError::NotDigits);
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for PageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PageId({})", self.0)
    }
}

impl std::str::FromStr for PageId {
    type Err = PageIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl<'de> serde::Deserialize<'de> for PageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_meta_page_ids() {
        assert_eq!(PageId::parse("104711112233445").unwrap().as_str(), "104711112233445");
        assert!(PageId::parse("17841405822304914").is_ok());
    }

    #[test]
    fn rejects_non_digits_empty_and_oversized() {
        assert_eq!(PageId::parse(""), Err(PageIdError::Empty));
        assert_eq!(PageId::parse("12a4"), Err(PageIdError::NotDigits));
        assert_eq!(PageId::parse("-1"), Err(PageIdError::NotDigits));
        assert_eq!(PageId::parse(" 1"), Err(PageIdError::NotDigits));
        assert_eq!(PageId::parse(&"1".repeat(33)), Err(PageIdError::TooLong));
    }
}
