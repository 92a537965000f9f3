-- A cluster runs on PostgreSQL only (cluster.mode = "postgres" is refused on SQLite); these tables keep the
-- two schemas alike, and stay empty here.
CREATE TABLE cluster_nodes (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT NOT NULL,
    started_at  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
    lease_until TIMESTAMP NOT NULL,
    left_at     TIMESTAMP
);

CREATE TABLE page_owners (
    page_id    TEXT PRIMARY KEY,
    owner      INTEGER REFERENCES cluster_nodes (id) ON DELETE SET NULL,
    epoch      INTEGER NOT NULL DEFAULT 0,
    claimed_at TIMESTAMP
);

CREATE TABLE page_figures (
    page_id           TEXT PRIMARY KEY,
    events            INTEGER NOT NULL DEFAULT 0,
    replies           INTEGER NOT NULL DEFAULT 0,
    send_errors       INTEGER NOT NULL DEFAULT 0,
    throttled         INTEGER NOT NULL DEFAULT 0,
    queue_depth       INTEGER NOT NULL DEFAULT 0,
    replies_last_hour INTEGER NOT NULL DEFAULT 0,
    last_event_ms     INTEGER,
    active            BOOLEAN NOT NULL DEFAULT 0,
    updated_at        TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP
);

DROP INDEX webhook_inbox_pending;
CREATE INDEX webhook_inbox_pending ON webhook_inbox (page_id, id) WHERE status = 'pending';
