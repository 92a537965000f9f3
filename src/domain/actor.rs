//! `Actor`: who did something, as the audit log names them.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Actor {
    /// An operator at the command line.
    Cli,
    /// A portal user (their id).
    User(i64),
    /// Someone who followed a client's onboarding link, not signed in.
    OnboardingLink,
    /// Meta, through its deauthorize and data-deletion callbacks.
    Meta,
    /// Switchboard itself (token health, the engine).
    System,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an audit actor (expected cli, user:<id>, onboarding-link, meta or system)")]
pub struct ActorError(String);

impl Actor {
    /// The actor of a portal action (a user) or of an onboarding-link flow (`None`).
    pub fn user_or_link(user_id: Option<i64>) -> Self {
        user_id.map_or(Actor::OnboardingLink, Actor::User)
    }

    pub fn parse(raw: &str) -> Result<Self, ActorError> {
        match raw {
            "cli" => Ok(Actor::Cli),
            "onboarding-link" => Ok(Actor::OnboardingLink),
            "meta" => Ok(Actor::Meta),
            "system" => Ok(Actor::System),
            other => other
                .strip_prefix("user:")
                .and_then(|id| id.parse().ok())
                .map(Actor::User)
                .ok_or_else(|| ActorError(other.to_owned())),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Cli => f.write_str("cli"),
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::OnboardingLink => f.write_str("onboarding-link"),
            Actor::Meta => f.write_str("meta"),
            Actor::System => f.write_str("system"),
        }
    }
}

impl serde::Serialize for Actor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actors_read_back_as_written() {
        for actor in [Actor::Cli, Actor::User(42), Actor::OnboardingLink, Actor::Meta, Actor::System] {
            assert_eq!(Actor::parse(&actor.to_string()), Ok(actor));
        }
        assert!(Actor::parse("user:").is_err());
        assert!(Actor::parse("root").is_err());
    }
}
