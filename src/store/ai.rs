//! What each client's AI answers spend: a month's settled tokens (`ai_months`) and the calls in flight, each
//! holding a reservation (`ai_reservations`) from before its call until its usage settles.
//!
//! Taking a reservation locks the month's row (PostgreSQL: the upsert's row lock; SQLite: the one writer), so
//! two nodes never both take the last tokens of a month: a month passes its budget by at most what the calls
//! in flight use beyond their reservations.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, on};
use crate::domain::ClientId;

/// A call's claim on its month's budget, held until [`Store::ai_settle`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub id: i64,
    pub month: String,
    /// The tokens reserved (the call's estimate, capped at what the month had left).
    pub tokens: u64,
}

/// A client's month, as the portal shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AiMonth {
    pub used_tokens: u64,
    pub calls: u64,
    /// Held by calls in flight now.
    pub reserved_tokens: u64,
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn signed(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Reserves up to `estimate` tokens of `client`'s `month` for a call, if the month has any left under
    /// `budget` once its settled usage and the live reservations are counted; `None` when nothing is left.
    /// The reservation stops counting at `expires_at` (a node that died with the call in flight).
    pub async fn ai_reserve(
        &self,
        client: ClientId,
        month: &str,
        budget: u64,
        estimate: u64,
        expires_at: DateTime<Utc>,
    ) -> Result<Option<Reservation>, StoreError> {
        let now = crate::clock::now();
        on!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The upsert locks the month's row until commit: reservations of one month are taken one at a time.
            let (used,): (i64,) = sqlx::query_as(
                "INSERT INTO ai_months (client_id, month) VALUES ($1, $2) \
                 ON CONFLICT (client_id, month) DO UPDATE SET used_tokens = ai_months.used_tokens \
                 RETURNING used_tokens",
            )
            .bind(client)
            .bind(month)
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ai_reservations WHERE client_id = $1 AND expires_at <= $2")
                .bind(client)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            let (reserved,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(tokens), 0) AS BIGINT) FROM ai_reservations \
                 WHERE client_id = $1 AND month = $2",
            )
            .bind(client)
            .bind(month)
            .fetch_one(&mut *tx)
            .await?;
            let left = budget.saturating_sub(count(used)).saturating_sub(count(reserved));
            if left == 0 {
                tx.commit().await?;
                return Ok(None);
            }
            let tokens = estimate.clamp(1, left);
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO ai_reservations (client_id, month, tokens, expires_at) VALUES ($1, $2, $3, $4) \
                 RETURNING id",
            )
            .bind(client)
            .bind(month)
            .bind(signed(tokens))
            .bind(expires_at)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(Some(Reservation { id, month: month.to_owned(), tokens }))
        })
    }

    /// Settles a call: its reservation is released and `used` tokens are added to its month (with the call
    /// counted when `called`: a call refused before it reached the model counts nothing).
    pub async fn ai_settle(
        &self,
        client: ClientId,
        reservation: &Reservation,
        used: u64,
        called: bool,
    ) -> Result<(), StoreError> {
        on!(self, |pool| {
            // The month's row first, as `ai_reserve` takes it: the same lock order, so the two never deadlock.
            let mut tx = pool.begin().await?;
            sqlx::query(
                "UPDATE ai_months SET used_tokens = used_tokens + $3, calls = calls + $4 \
                 WHERE client_id = $1 AND month = $2",
            )
            .bind(client)
            .bind(&reservation.month)
            .bind(signed(used))
            .bind(i64::from(called))
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM ai_reservations WHERE id = $1").bind(reservation.id).execute(&mut *tx).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// What `client`'s `month` used so far, and what calls in flight hold.
    pub async fn ai_month(&self, client: ClientId, month: &str) -> Result<AiMonth, StoreError> {
        let now = crate::clock::now();
        on!(self, |pool| {
            let settled: Option<(i64, i64)> =
                sqlx::query_as("SELECT used_tokens, calls FROM ai_months WHERE client_id = $1 AND month = $2")
                    .bind(client)
                    .bind(month)
                    .fetch_optional(pool)
                    .await?;
            let (reserved,): (i64,) = sqlx::query_as(
                "SELECT CAST(COALESCE(SUM(tokens), 0) AS BIGINT) FROM ai_reservations \
                 WHERE client_id = $1 AND month = $2 AND expires_at > $3",
            )
            .bind(client)
            .bind(month)
            .bind(now)
            .fetch_one(pool)
            .await?;
            let (used, calls) = settled.unwrap_or_default();
            Ok(AiMonth { used_tokens: count(used), calls: count(calls), reserved_tokens: count(reserved) })
        })
    }
}
