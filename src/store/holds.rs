//! Conversations a person at the business is handling: the bot stays silent with that customer until the hold
//! runs out (see `actors::tenant::takeover`).

use super::{Store, StoreError, on};

impl Store {
    /// The bot stays silent with `person` on `page` until `until_ms` (unix ms); a later hold is never
    /// shortened by an earlier answer arriving late.
    pub async fn hold_conversation(&self, page: &str, person: &str, until_ms: i64) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query(
                "INSERT INTO conversation_holds (page_id, person, until_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (page_id, person) DO UPDATE SET until_ms = excluded.until_ms \
                 WHERE conversation_holds.until_ms < excluded.until_ms",
            )
            .bind(page)
            .bind(person)
            .bind(until_ms)
            .execute(pool)
            .await?;
            Ok(())
        })
    }

    /// The conversation with `person` on `page` is the bot's again.
    pub async fn release_conversation(&self, page: &str, person: &str) -> Result<(), StoreError> {
        on!(self, |pool| {
            sqlx::query("DELETE FROM conversation_holds WHERE page_id = $1 AND person = $2")
                .bind(page)
                .bind(person)
                .execute(pool)
                .await?;
            Ok(())
        })
    }

    /// The holds on `page` still running at `now_ms`: (person, until when).
    pub async fn conversation_holds(&self, page: &str, now_ms: i64) -> Result<Vec<(String, i64)>, StoreError> {
        on!(self, |pool| {
            let rows: Vec<(String, i64)> = sqlx::query_as(
                "SELECT person, until_ms FROM conversation_holds WHERE page_id = $1 AND until_ms > $2 \
                 ORDER BY person",
            )
            .bind(page)
            .bind(now_ms)
            .fetch_all(pool)
            .await?;
            Ok(rows)
        })
    }

    /// Deletes the holds that ran out before `now_ms`; how many.
    pub async fn prune_conversation_holds(&self, now_ms: i64) -> Result<u64, StoreError> {
        on!(self, |pool| {
            let done =
                sqlx::query("DELETE FROM conversation_holds WHERE until_ms <= $1").bind(now_ms).execute(pool).await?;
            Ok(done.rows_affected())
        })
    }
}
