//! OAuth states: the hash of each state, the hash of its browser's value, and what its callback did.

use chrono::{DateTime, Utc};

use crate::domain::ClientId;

use super::{Store, StoreError, on};

/// A new OAuth state: only hashes are stored.
#[derive(Debug, Clone)]
pub struct NewOAuthState {
    pub state_hash: Vec<u8>,
    pub client_id: ClientId,
    /// The portal user who started it, if it was started from the portal.
    pub user_id: Option<i64>,
    pub expires_at: DateTime<Utc>,
    /// The SHA-256 of the value the starting browser holds in its cookie.
    pub browser_hash: Vec<u8>,
    /// The expiry of the onboarding link it was started from, if any.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// Why an OAuth state could not be consumed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateRejected {
    Unknown,
    Expired,
    AlreadyUsed,
    /// The callback came to another browser than the one that started the flow.
    OtherBrowser,
}

/// A consumed OAuth state: whose flow it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedState {
    pub client_id: ClientId,
    pub user_id: Option<i64>,
}

/// What a callback recorded for its result page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthOutcome {
    pub client_id: ClientId,
    pub created_at: DateTime<Utc>,
    pub outcome: String,
    /// The expiry of the onboarding link the flow started from, if any: "Connect again" inherits it.
    pub link_expires_at: Option<DateTime<Utc>>,
}

/// (used, expires, browser hash): why a state could not be consumed.
type StateRow = (Option<DateTime<Utc>>, DateTime<Utc>, Option<Vec<u8>>);
/// (client, created, outcome, link expiry).
type OutcomeRow = (ClientId, DateTime<Utc>, Option<String>, Option<DateTime<Utc>>);

impl Store {
    /// Stores a new OAuth state (its hash, and the hash of its browser's value).
    pub async fn create_oauth_state(&self, state: &NewOAuthState) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO oauth_states (state_hash, client_id, user_id, created_at, expires_at, browser_hash, \
                     link_expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&state.state_hash)
            .bind(state.client_id)
            .bind(state.user_id)
            .bind(crate::clock::now())
            .bind(state.expires_at)
            .bind(&state.browser_hash)
            .bind(state.link_expires_at)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// Consumes a state atomically, from the browser that started it: only the first caller within its
    /// lifetime gets it. From another browser nothing is consumed.
    pub async fn consume_oauth_state(
        &self,
        state_hash: &[u8],
        browser_hash: &[u8],
    ) -> Result<Result<ConsumedState, StateRejected>, StoreError> {
        on!(self, |pool| {
            let now = crate::clock::now();
            let consumed: Option<(ClientId, Option<i64>)> = sqlx::query_as(
                "UPDATE oauth_states SET used_at = $2 \
                 WHERE state_hash = $1 AND used_at IS NULL AND expires_at > $2 AND browser_hash = $3 \
                 RETURNING client_id, user_id",
            )
            .bind(state_hash)
            .bind(now)
            .bind(browser_hash)
            .fetch_optional(pool)
            .await?;
            if let Some((client_id, user_id)) = consumed {
                return Ok(Ok(ConsumedState { client_id, user_id }));
            }
            let why: Option<StateRow> =
                sqlx::query_as("SELECT used_at, expires_at, browser_hash FROM oauth_states WHERE state_hash = $1")
                    .bind(state_hash)
                    .fetch_optional(pool)
                    .await?;
            Ok(Err(match why {
                None => StateRejected::Unknown,
                Some((Some(_), _, _)) => StateRejected::AlreadyUsed,
                Some((None, expires_at, _)) if expires_at <= now => StateRejected::Expired,
                Some((None, _, _)) => StateRejected::OtherBrowser,
            }))
        })
    }

    /// Records what the callback did, for the result page at `result_id` (a random id of its own: nothing about
    /// the state, which Facebook's dialog URL carries, leads to it).
    pub async fn set_oauth_outcome(&self, state_hash: &[u8], result_id: &str, outcome: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("UPDATE oauth_states SET outcome = $2, result_id = $3 WHERE state_hash = $1")
                .bind(state_hash)
                .bind(outcome)
                .bind(result_id)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// What the callback whose result page is `result_id` did.
    pub async fn oauth_outcome(&self, result_id: &str) -> Result<Option<OAuthOutcome>, StoreError> {
        on!(self, |pool| {
            let row: Option<OutcomeRow> = sqlx::query_as(
                "SELECT client_id, created_at, outcome, link_expires_at FROM oauth_states WHERE result_id = $1",
            )
            .bind(result_id)
            .fetch_optional(pool)
            .await?;
            Ok(row.and_then(|(client_id, created_at, outcome, link_expires_at)| {
                outcome.map(|outcome| OAuthOutcome { client_id, created_at, outcome, link_expires_at })
            }))
        })
    }

    /// Deletes OAuth states (used or not, with their outcomes) created before `before`; returns how many.
    pub async fn prune_oauth_states(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done = sqlx::query("DELETE FROM oauth_states WHERE created_at < $1").bind(before).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }
}
