//! A secret as the vault sealed it ([`SealedToken`]) and the name of the key that sealed it ([`KeyId`]): plain
//! values that the store keeps and the vault (`secrets::vault`) makes and opens, so neither imports the other
//! for them. Nothing here encrypts, decrypts or logs.

use std::fmt;

/// Nonce length of AES-GCM as used here: 96 bits, the size GCM is specified for.
pub const NONCE_LEN: usize = 12;
/// GCM authentication tag length.
const TAG_LEN: usize = 16;
const KEY_ID_MAX: usize = 32;

/// The name of a key in the ring: 1 to 32 of `A-Z a-z 0-9 _ . -`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId(String);

impl KeyId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        if raw.is_empty() || raw.len() > KEY_ID_MAX {
            return Err(format!("key id must be 1 to {KEY_ID_MAX} characters"));
        }
        if !raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
            return Err("key id may contain only letters, digits, '_', '.' and '-'".to_owned());
        }
        Ok(Self(raw.to_owned()))
    }

    /// An id the vault names itself (`ephemeral`, `demo-YYYYMMDD`), valid as written; an id from outside goes
    /// through [`KeyId::parse`].
    pub(crate) fn new_unchecked(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// Why a stored sealed token could not be rebuilt. It carries no secret material.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed token is malformed: {0}")]
pub struct MalformedSealedToken(pub &'static str);

/// A sealed token as stored: which key sealed it, the nonce, and ciphertext with its tag.
/// In the database the nonce and ciphertext share one column (`nonce || ciphertext`).
#[derive(Clone, PartialEq, Eq)]
pub struct SealedToken {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl SealedToken {
    /// What the vault has just sealed: the key that sealed it, its nonce, and the ciphertext with its tag.
    pub(crate) fn new(key_id: KeyId, nonce: [u8; NONCE_LEN], ciphertext: Vec<u8>) -> Self {
        Self { key_id, nonce, ciphertext }
    }

    /// Rebuilds a sealed token from its stored form, rejecting anything too short to be one.
    pub fn from_stored(key_id: &str, stored: &[u8]) -> Result<Self, MalformedSealedToken> {
        let key_id = KeyId::parse(key_id).map_err(|_| MalformedSealedToken("key id is not valid"))?;
        if stored.len() < NONCE_LEN + TAG_LEN {
            return Err(MalformedSealedToken("shorter than a nonce and a tag"));
        }
        let (nonce, ciphertext) = stored.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| MalformedSealedToken("bad nonce"))?;
        Ok(Self { key_id, nonce, ciphertext: ciphertext.to_vec() })
    }

    /// The stored form: `nonce || ciphertext-with-tag`.
    pub fn to_stored(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(NONCE_LEN + self.ciphertext.len());
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn key_id(&self) -> &KeyId {
        &self.key_id
    }

    pub(crate) fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }

    /// The ciphertext with its tag.
    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }
}

impl fmt::Debug for SealedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedToken")
            .field("key_id", &self.key_id)
            .field("len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}
