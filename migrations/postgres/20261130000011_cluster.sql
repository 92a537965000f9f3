-- Running as a cluster (cluster.mode = "postgres"). Each node incarnation holds a lease renewed from
-- PostgreSQL's own clock; each connected Page has at most one owner, and an epoch that grows with every claim
-- and fences every write on the way to a send. Owners keep a small snapshot of each Page's figures, so the
-- portal shows the same numbers on every node.
CREATE TABLE cluster_nodes (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until TIMESTAMPTZ NOT NULL,
    left_at     TIMESTAMPTZ
);
CREATE INDEX cluster_nodes_live ON cluster_nodes (lease_until) WHERE left_at IS NULL;

CREATE TABLE page_owners (
    page_id    TEXT PRIMARY KEY,
    owner      BIGINT REFERENCES cluster_nodes (id) ON DELETE SET NULL,
    epoch      BIGINT NOT NULL DEFAULT 0,
    claimed_at TIMESTAMPTZ
);

CREATE TABLE page_figures (
    page_id           TEXT PRIMARY KEY,
    events            BIGINT NOT NULL DEFAULT 0,
    replies           BIGINT NOT NULL DEFAULT 0,
    send_errors       BIGINT NOT NULL DEFAULT 0,
    throttled         BIGINT NOT NULL DEFAULT 0,
    queue_depth       BIGINT NOT NULL DEFAULT 0,
    replies_last_hour BIGINT NOT NULL DEFAULT 0,
    last_event_ms     BIGINT,
    active            BOOLEAN NOT NULL DEFAULT false,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The owner of a Page takes that Page's pending events when it is woken for them.
DROP INDEX webhook_inbox_pending;
CREATE INDEX webhook_inbox_pending ON webhook_inbox (page_id, id) WHERE status = 'pending';
