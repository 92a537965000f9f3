//! Throttle counters every node shares (sign-in attempts, "Connect with Facebook" starts): hits per key in
//! fixed windows (the current and the previous one make a sliding estimate), kept in the database so a
//! cluster's nodes count together and a restart forgets nothing. Keys arrive hashed; old windows are pruned.

use super::{Store, StoreError, on};

impl Store {
    /// Counts one hit for `key_hash` in `scope`'s window ending at `window_end` (unix seconds): the hits in
    /// that window so far (this one included), and in the window that ended at `previous_end`.
    pub async fn throttle_hit(
        &self,
        scope: &str,
        key_hash: &str,
        window_end: i64,
        previous_end: i64,
    ) -> Result<(i64, i64), StoreError> {
        on!(self, |pool| {
            let (hits,): (i64,) = sqlx::query_as(
                "INSERT INTO throttle_hits (scope, key_hash, window_end, hits) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (scope, key_hash, window_end) DO UPDATE SET hits = throttle_hits.hits + 1 \
                 RETURNING hits",
            )
            .bind(scope)
            .bind(key_hash)
            .bind(window_end)
            .fetch_one(pool)
            .await?;
            let previous: Option<(i64,)> =
                sqlx::query_as("SELECT hits FROM throttle_hits WHERE scope = $1 AND key_hash = $2 AND window_end = $3")
                    .bind(scope)
                    .bind(key_hash)
                    .bind(previous_end)
                    .fetch_optional(pool)
                    .await?;
            Ok((hits, previous.map_or(0, |(n,)| n)))
        })
    }

    /// Deletes the counters of windows that ended before `before` (unix seconds); how many.
    pub async fn throttle_prune(&self, before: i64) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done =
                sqlx::query("DELETE FROM throttle_hits WHERE window_end < $1").bind(before).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }
}
