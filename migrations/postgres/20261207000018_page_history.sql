-- Each Page's figures over time, for the portal's charts: per minute for a day and per hour for 30 days
-- (bucket_secs 60 or 3600; `at` is the bucket's start, unix seconds). Whichever node runs the Page adds what its
-- tenant counted, so a node that claims a Page continues its history. Pruned hourly.
CREATE TABLE page_history (
    page_id          TEXT NOT NULL,
    bucket_secs      BIGINT NOT NULL,
    at               BIGINT NOT NULL,
    events           BIGINT NOT NULL DEFAULT 0,
    answers          BIGINT NOT NULL DEFAULT 0,
    failures         BIGINT NOT NULL DEFAULT 0,
    -- The slowest webhook → reply 95th percentile (milliseconds) any node saw in the bucket.
    reply_p95_ms     BIGINT,
    -- The oldest pending event's age (seconds) at the bucket's worst moment.
    oldest_pending_s BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (page_id, bucket_secs, at)
);
