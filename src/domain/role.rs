//! `Role`: what a portal user may see. Operators see every tenant; client users only their own.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Operator,
    Client,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a role (expected operator or client)")]
pub struct RoleError(String);

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Client => "client",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, RoleError> {
        match raw {
            "operator" => Ok(Role::Operator),
            "client" => Ok(Role::Client),
            other => Err(RoleError(other.to_owned())),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}
