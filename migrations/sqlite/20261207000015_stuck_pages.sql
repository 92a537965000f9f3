-- The stuck-Page watchdog's findings: each Page whose oldest pending event has waited longer than
-- inbox.stuck_after_secs while none of its events finished, with the reason its owner could tell. Written by the
-- node that checked it (replaced at each check, deleted once the Page makes progress or has nothing pending),
-- read by `switchboard inbox stats` from any process. Times are unix milliseconds.
CREATE TABLE stuck_pages (
    page_id    TEXT PRIMARY KEY,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    pending    BIGINT NOT NULL,
    oldest_ms  BIGINT NOT NULL,
    since_ms   BIGINT NOT NULL,
    node       TEXT NOT NULL,
    checked_ms BIGINT NOT NULL
);
