//! Secrets at rest: the vault that seals Page tokens and relay secrets (AES-256-GCM), the rotation that re-seals
//! them under a new key, and portal passwords (argon2id).

pub mod password;
pub mod rotation;
pub mod tokens;
pub mod vault;
