//! The token vault: where Page access tokens are sealed and opened.
//!
//! AES-256-GCM with a fresh random 96-bit nonce per seal. The associated data binds a ciphertext to the
//! page id it belongs to and to the key id that made it, so a ciphertext copied onto another page's row (or
//! relabelled with another key id) fails to open. Every ciphertext records its key id; the key ring holds
//! the current key (which seals) and older keys (which only open), so keys can be rotated without downtime.
//! Nothing in this module logs, and no error it returns carries a token or key bytes.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use crate::domain::{AccessToken, ClientId, MalformedSealedToken, PageId};
/// The vault's values live in `domain` (so the store needs no vault); re-exported where its callers look.
pub use crate::domain::{KeyId, NONCE_LEN, SealedToken};

const KEY_LEN: usize = 32;
/// Versioned domain separators for the associated data; bump one if its AAD layout ever changes. A page
/// token can never be opened as a relay secret or the other way round.
const PAGE_TOKEN: &[u8] = b"switchboard/page-token/v1";
const RELAY_SECRET: &[u8] = b"switchboard/relay-secret/v1";

/// Errors of the vault. None of them carries secret material.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(
        "no encryption key configured: set SWITCHBOARD_ENCRYPTION_KEYS or vault.key_file (make one with `switchboard keygen`); only `switchboard demo` makes a key of its own"
    )]
    NoKey,
    #[error(
        "no encryption key configured, but {0} is there, made for this database by an earlier version: set \
         vault.key_file (SWITCHBOARD_KEY_FILE) to it"
    )]
    KeyFileNotConfigured(std::path::PathBuf),
    #[error("encryption key entry #{position} is malformed: {problem}")]
    MalformedKey { position: usize, problem: String },
    #[error("encryption key id {0:?} appears twice in the key ring")]
    DuplicateKeyId(String),
    #[error(
        "stored tokens were sealed with key id(s) {} which the key ring does not hold; add the old key(s) back to SWITCHBOARD_ENCRYPTION_KEYS (after the current one)",
        .0.join(", ")
    )]
    UnknownKeyIds(Vec<String>),
    #[error("ciphertext names key id {0:?} which the key ring does not hold")]
    UnknownKeyId(String),
    #[error("sealed token is malformed: {0}")]
    Malformed(&'static str),
    #[error(
        "token for page {page} failed to decrypt: it was tampered with, belongs to another page, or the key is wrong"
    )]
    Decrypt { page: PageId },
    #[error("decrypted token for page {page} is not valid UTF-8")]
    NotUtf8 { page: PageId },
    #[error("encryption failed")]
    Encrypt,
    #[error("a sealed secret failed to decrypt: it was tampered with, belongs to another client, or the key is wrong")]
    SecretUnreadable,
    #[error("key file {path}: {source}")]
    KeyFile { path: PathBuf, source: std::io::Error },
}

struct RingKey {
    id: KeyId,
    /// Zeroized on drop (aes-gcm's `zeroize` feature).
    cipher: Aes256Gcm,
}

/// The configured keys. The first seals; all of them open.
pub struct KeyRing {
    keys: Vec<RingKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish_non_exhaustive()
    }
}

impl KeyRing {
    /// Parses `id:base64-of-32-bytes` entries separated by commas or newlines; blank lines and lines
    /// starting with `#` are ignored (so a key file can carry comments). The first entry is the current key.
    pub fn parse(spec: &SecretString) -> Result<Self, VaultError> {
        let mut keys: Vec<RingKey> = Vec::new();
        let entries = spec
            .expose_secret()
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .flat_map(|line| line.split(','))
            .map(str::trim)
            .filter(|entry| !entry.is_empty());
        for (index, entry) in entries.enumerate() {
            let position = index + 1;
            let malformed = |problem: &str| VaultError::MalformedKey { position, problem: problem.to_owned() };
            let (id, material) = entry.split_once(':').ok_or_else(|| malformed("expected id:base64-of-32-bytes"))?;
            let id = KeyId::parse(id.trim()).map_err(|p| malformed(&p))?;
            let bytes = Zeroizing::new(
                BASE64.decode(material.trim()).map_err(|_| malformed("key material is not valid base64"))?,
            );
            if bytes.len() != KEY_LEN {
                return Err(malformed(&format!("key must be {KEY_LEN} bytes, got {}", bytes.len())));
            }
            if keys.iter().any(|k| k.id == id) {
                return Err(VaultError::DuplicateKeyId(id.as_str().to_owned()));
            }
            let key = Key::<Aes256Gcm>::try_from(&bytes[..]).map_err(|_| malformed("bad key length"))?;
            keys.push(RingKey { id, cipher: Aes256Gcm::new(&key) });
        }
        if keys.is_empty() {
            return Err(VaultError::NoKey);
        }
        Ok(Self { keys })
    }

    /// The id of the key that seals new tokens.
    pub fn current_key_id(&self) -> &KeyId {
        &self.keys[0].id
    }

    pub fn contains(&self, id: &str) -> bool {
        self.keys.iter().any(|k| k.id.as_str() == id)
    }

    /// Fails, naming them, if any of `stored_ids` is not in the ring. Run at start-up, so a missing old key
    /// is found before a customer's message needs it.
    pub fn check_known<S: AsRef<str>>(&self, stored_ids: &[S]) -> Result<(), VaultError> {
        let unknown: Vec<String> =
            stored_ids.iter().map(AsRef::as_ref).filter(|id| !self.contains(id)).map(str::to_owned).collect();
        if unknown.is_empty() { Ok(()) } else { Err(VaultError::UnknownKeyIds(unknown)) }
    }

    /// Seals `token` for `page` under the current key with a fresh random nonce.
    pub fn seal(&self, page: &PageId, token: &AccessToken) -> Result<SealedToken, VaultError> {
        self.seal_bytes(PAGE_TOKEN, page.as_str(), token.expose().as_bytes())
    }

    /// Opens a token sealed for `page`. Fails if the ciphertext or its key id was altered, if it was sealed
    /// for another page, or if the key is not in the ring.
    pub fn open(&self, page: &PageId, sealed: &SealedToken) -> Result<AccessToken, VaultError> {
        let text = self.open_text(PAGE_TOKEN, page.as_str(), sealed).map_err(|e| e.for_subject(page))?;
        Ok(AccessToken::new(text))
    }

    /// Seals a client's relay secret, bound to the client id.
    pub fn seal_relay_secret(&self, client_id: ClientId, secret: &SecretString) -> Result<SealedToken, VaultError> {
        self.seal_bytes(RELAY_SECRET, &client_id.to_string(), secret.expose_secret().as_bytes())
    }

    pub fn open_relay_secret(&self, client_id: ClientId, sealed: &SealedToken) -> Result<SecretString, VaultError> {
        Ok(SecretString::from(self.open_text(RELAY_SECRET, &client_id.to_string(), sealed)?))
    }

    fn seal_bytes(&self, context: &[u8], subject: &str, plaintext: &[u8]) -> Result<SealedToken, VaultError> {
        let key = &self.keys[0];
        let nonce = Nonce::generate();
        let aad = associated_data(context, &key.id, subject);
        let ciphertext =
            key.cipher.encrypt(&nonce, Payload { msg: plaintext, aad: &aad }).map_err(|_| VaultError::Encrypt)?;
        let nonce: [u8; NONCE_LEN] = nonce.into();
        Ok(SealedToken::new(key.id.clone(), nonce, ciphertext))
    }

    fn open_text(&self, context: &[u8], subject: &str, sealed: &SealedToken) -> Result<String, OpenError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == *sealed.key_id())
            .ok_or_else(|| OpenError::UnknownKey(sealed.key_id().as_str().to_owned()))?;
        let aad = associated_data(context, sealed.key_id(), subject);
        let nonce = Nonce::from(*sealed.nonce());
        let plain = key
            .cipher
            .decrypt(&nonce, Payload { msg: sealed.ciphertext(), aad: &aad })
            .map_err(|_| OpenError::Decrypt)?;
        String::from_utf8(plain).map_err(|err| {
            drop(Zeroizing::new(err.into_bytes()));
            OpenError::NotUtf8
        })
    }
}

/// Why opening failed, before the subject is known to the error.
#[derive(Debug)]
enum OpenError {
    UnknownKey(String),
    Decrypt,
    NotUtf8,
}

impl OpenError {
    fn for_subject(self, page: &PageId) -> VaultError {
        match self {
            OpenError::UnknownKey(id) => VaultError::UnknownKeyId(id),
            OpenError::Decrypt => VaultError::Decrypt { page: page.clone() },
            OpenError::NotUtf8 => VaultError::NotUtf8 { page: page.clone() },
        }
    }
}

impl From<MalformedSealedToken> for VaultError {
    fn from(e: MalformedSealedToken) -> Self {
        VaultError::Malformed(e.0)
    }
}

impl From<OpenError> for VaultError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::UnknownKey(id) => VaultError::UnknownKeyId(id),
            OpenError::Decrypt | OpenError::NotUtf8 => VaultError::SecretUnreadable,
        }
    }
}

fn associated_data(context: &[u8], key_id: &KeyId, subject: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(context.len() + key_id.as_str().len() + subject.len() + 2);
    aad.extend_from_slice(context);
    aad.push(0);
    aad.extend_from_slice(key_id.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(subject.as_bytes());
    aad
}

/// A new random key in key-ring form, `id:base64`. Wrapped so it is wiped after printing.
pub fn generate_key_entry(id: &KeyId) -> SecretString {
    let key = Key::<Aes256Gcm>::generate();
    let encoded = Zeroizing::new(BASE64.encode(key.as_slice()));
    SecretString::from(format!("{}:{}", id, encoded.as_str()))
}

/// Where the key ring comes from, decided at start-up from the settings and the database kind.
#[derive(Debug)]
pub enum KeySource {
    /// `SWITCHBOARD_ENCRYPTION_KEYS` / `vault.keys`.
    Inline(SecretString),
    /// `vault.key_file`: must exist.
    File(PathBuf),
    /// `switchboard demo` only: load this file, or create it with a new key (mode 0600).
    GenerateIfMissing(PathBuf),
    /// An in-memory SQLite database: a key that lives exactly as long as the data it protects.
    Ephemeral,
}

impl KeySource {
    pub fn load(&self) -> Result<KeyRing, VaultError> {
        match self {
            KeySource::Inline(spec) => KeyRing::parse(spec),
            KeySource::File(path) => KeyRing::parse(&read_key_file(path)?),
            KeySource::GenerateIfMissing(path) => {
                if path.exists() {
                    KeyRing::parse(&read_key_file(path)?)
                } else {
                    let entry = generate_key_entry(&KeyId::new_unchecked(format!(
                        "demo-{}",
                        crate::clock::now().format("%Y%m%d")
                    )));
                    write_new_key_file(path, &entry)?;
                    tracing::warn!(
                        path = %path.display(),
                        "generated a demo encryption key for the embedded SQLite database; \
                         use SWITCHBOARD_ENCRYPTION_KEYS for anything real"
                    );
                    KeyRing::parse(&entry)
                }
            }
            KeySource::Ephemeral => KeyRing::parse(&generate_key_entry(&KeyId::new_unchecked("ephemeral".to_owned()))),
        }
    }
}

fn read_key_file(path: &Path) -> Result<SecretString, VaultError> {
    let wrap = |source| VaultError::KeyFile { path: path.to_owned(), source };
    let text = std::fs::read_to_string(path).map_err(wrap)?;
    warn_if_readable_by_others(path);
    Ok(SecretString::from(text))
}

/// Creates the file exclusively (never overwrites a key) with mode 0600 before any byte is written.
fn write_new_key_file(path: &Path, entry: &SecretString) -> Result<(), VaultError> {
    let wrap = |source| VaultError::KeyFile { path: path.to_owned(), source };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(wrap)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(wrap)?;
    writeln!(
        file,
        "# Switchboard demo encryption key (embedded SQLite default). Keep this file with the database;\n\
         # without it the stored Page tokens cannot be decrypted."
    )
    .map_err(wrap)?;
    writeln!(file, "{}", entry.expose_secret()).map_err(wrap)?;
    file.sync_all().map_err(wrap)
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    if let Ok(meta) = std::fs::metadata(path) {
        use std::os::unix::fs::PermissionsExt as _;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests;
