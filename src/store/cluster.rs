//! A cluster's coordination (PostgreSQL only): node leases from the database's own clock, one owner and an
//! epoch per connected Page, the owners' figure snapshots, and NOTIFY. The fenced writes on the way to a send
//! are with the inbox's (`postgres.rs`).

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;

use super::{Db, Store, StoreError};
use crate::domain::PageId;

/// The NOTIFY channel of integration changes (payload: a page id).
pub const DIRECTORY_CHANNEL: &str = "switchboard_directory";

/// A node incarnation, as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeRecord {
    pub id: i64,
    pub name: String,
    pub started_at: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
    /// Its lease runs now (it renewed within the TTL and has not left).
    pub live: bool,
    /// Milliseconds of lease left (negative: expired this long ago).
    pub lease_left_ms: i64,
    pub left_at: Option<DateTime<Utc>>,
}

/// A Page's owner (a node id, none while unowned) and epoch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OwnerRecord {
    pub page_id: PageId,
    pub owner: Option<i64>,
    pub epoch: i64,
}

/// A Page's figures, as its owner last wrote them.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct FiguresRecord {
    pub page_id: String,
    pub events: i64,
    pub replies: i64,
    pub send_errors: i64,
    pub throttled: i64,
    pub queue_depth: i64,
    pub replies_last_hour: i64,
    pub last_event_ms: Option<i64>,
    pub active: bool,
}

/// A live node's lease, in SQL: the node `$node` has not left and its lease has not run out.
macro_rules! live_node {
    ($node:literal) => {
        concat!(
            "SELECT 1 FROM cluster_nodes n WHERE n.id = ",
            $node,
            " AND n.left_at IS NULL AND n.lease_until > now()"
        )
    };
}

impl Store {
    fn postgres(&self) -> Result<&PgPool, StoreError> {
        match &self.db {
            Db::Postgres(pool) => Ok(pool),
            Db::Sqlite(_) => Err(StoreError::Conflict("a cluster needs PostgreSQL".to_owned())),
        }
    }

    /// A new node incarnation named `name`, with a lease of `ttl_ms`; its id.
    pub async fn node_join(&self, name: &str, ttl_ms: i64) -> Result<i64, StoreError> {
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO cluster_nodes (name, lease_until) VALUES ($1, now() + make_interval(secs => $2::float8 / 1000.0)) \
             RETURNING id",
        )
        .bind(name)
        .bind(ttl_ms)
        .fetch_one(self.postgres()?)
        .await?;
        Ok(id)
    }

    /// Renews `node`'s lease for `ttl_ms`; false if it had run out or the node left (it may no longer act).
    pub async fn node_renew(&self, node: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE cluster_nodes SET lease_until = now() + make_interval(secs => $2::float8 / 1000.0) \
             WHERE id = $1 AND left_at IS NULL AND lease_until > now()",
        )
        .bind(node)
        .bind(ttl_ms)
        .execute(self.postgres()?)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// `node` leaves: its lease ends now and the Pages it still owns are unowned.
    pub async fn node_leave(&self, node: i64) -> Result<(), StoreError> {
        let mut tx = self.postgres()?.begin().await?;
        sqlx::query("UPDATE page_owners SET owner = NULL WHERE owner = $1").bind(node).execute(&mut *tx).await?;
        sqlx::query("UPDATE cluster_nodes SET left_at = now(), lease_until = now() WHERE id = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The live nodes: (id, name).
    pub async fn live_nodes(&self) -> Result<Vec<(i64, String)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, name FROM cluster_nodes WHERE left_at IS NULL AND lease_until > now() ORDER BY id",
        )
        .fetch_all(self.postgres()?)
        .await?)
    }

    /// Claims `page` for `node` if it has no live owner, or `node` owns it already (a claim whose answer was
    /// lost), and `node`'s own lease runs; the new epoch.
    pub async fn page_claim(&self, page: &PageId, node: i64) -> Result<Option<i64>, StoreError> {
        let claimed: Option<(i64,)> = sqlx::query_as(concat!(
            "INSERT INTO page_owners AS o (page_id, owner, epoch, claimed_at) ",
            "SELECT $1, $2, 1, now() WHERE EXISTS (",
            live_node!("$2"),
            ") ON CONFLICT (page_id) DO UPDATE SET owner = $2, epoch = o.epoch + 1, claimed_at = now() ",
            "WHERE (o.owner IS NULL OR o.owner = $2 OR NOT EXISTS (",
            live_node!("o.owner"),
            ")) AND EXISTS (",
            live_node!("$2"),
            ") RETURNING epoch"
        ))
        .bind(page.as_str())
        .bind(node)
        .fetch_optional(self.postgres()?)
        .await?;
        Ok(claimed.map(|(epoch,)| epoch))
    }

    /// Gives `page` up, if `node` still owns it at `epoch`.
    pub async fn page_release(&self, page: &PageId, node: i64, epoch: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE page_owners SET owner = NULL WHERE page_id = $1 AND owner = $2 AND epoch = $3")
            .bind(page.as_str())
            .bind(node)
            .bind(epoch)
            .execute(self.postgres()?)
            .await?;
        Ok(())
    }

    /// Every Page's owner and epoch.
    pub async fn page_owners(&self) -> Result<Vec<OwnerRecord>, StoreError> {
        let rows: Vec<(String, Option<i64>, i64)> =
            sqlx::query_as("SELECT page_id, owner, epoch FROM page_owners ORDER BY page_id")
                .fetch_all(self.postgres()?)
                .await?;
        rows.into_iter()
            .map(|(page_id, owner, epoch)| {
                let page_id =
                    PageId::parse(&page_id).map_err(|e| StoreError::Corrupt(format!("page_owners.page_id: {e}")))?;
                Ok(OwnerRecord { page_id, owner, epoch })
            })
            .collect()
    }

    /// Every node incarnation that is live or left less than a day ago, newest first.
    pub async fn cluster_nodes(&self) -> Result<Vec<NodeRecord>, StoreError> {
        type Row = (i64, String, DateTime<Utc>, DateTime<Utc>, bool, f64, Option<DateTime<Utc>>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, name, started_at, lease_until, left_at IS NULL AND lease_until > now(), \
                    EXTRACT(EPOCH FROM lease_until - now())::float8, left_at \
             FROM cluster_nodes WHERE lease_until > now() - interval '1 day' ORDER BY id DESC",
        )
        .fetch_all(self.postgres()?)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, name, started_at, lease_until, live, left, left_at)| NodeRecord {
                id,
                name,
                started_at,
                lease_until,
                live,
                lease_left_ms: (left * 1000.0) as i64,
                left_at,
            })
            .collect())
    }

    /// Deletes node rows that ended more than a day ago (their Pages were unowned or claimed long since).
    pub async fn prune_nodes(&self) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM cluster_nodes WHERE lease_until < now() - interval '1 day'")
            .execute(self.postgres()?)
            .await?;
        Ok(done.rows_affected())
    }

    /// Tells every node that `page`'s integration changed: on PostgreSQL a NOTIFY a cluster's nodes act on at
    /// once (their reconcile is the backstop, and the only way on SQLite).
    pub async fn announce(&self, page: &PageId) {
        if self.backend() == super::Backend::Postgres
            && let Err(e) = self.notify(DIRECTORY_CHANNEL, page.as_str()).await
        {
            tracing::warn!(%page, error = %e, "cannot announce an integration change; the other nodes reconcile");
        }
    }

    /// `NOTIFY channel, payload`.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)").bind(channel).bind(payload).execute(self.postgres()?).await?;
        Ok(())
    }

    /// Writes the figures of Pages `node` owns (rows of Pages it does not own are left alone).
    pub async fn figures_write(&self, node: i64, figures: &[FiguresRecord]) -> Result<(), StoreError> {
        let mut tx = self.postgres()?.begin().await?;
        for f in figures {
            sqlx::query(concat!(
                "INSERT INTO page_figures AS f (page_id, events, replies, send_errors, throttled, queue_depth, ",
                "replies_last_hour, last_event_ms, active, updated_at) ",
                "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, now() ",
                "WHERE EXISTS (SELECT 1 FROM page_owners WHERE page_id = $1 AND owner = $10) ",
                "ON CONFLICT (page_id) DO UPDATE SET events = $2, replies = $3, send_errors = $4, throttled = $5, ",
                "queue_depth = $6, replies_last_hour = $7, last_event_ms = $8, active = $9, updated_at = now()"
            ))
            .bind(&f.page_id)
            .bind(f.events)
            .bind(f.replies)
            .bind(f.send_errors)
            .bind(f.throttled)
            .bind(f.queue_depth)
            .bind(f.replies_last_hour)
            .bind(f.last_event_ms)
            .bind(f.active)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every Page's last figures.
    pub async fn figures(&self) -> Result<Vec<FiguresRecord>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT page_id, events, replies, send_errors, throttled, queue_depth, replies_last_hour, last_event_ms, \
                    active FROM page_figures",
        )
        .fetch_all(self.postgres()?)
        .await?)
    }
}
