-- As on PostgreSQL: a signed_request callback is claimed per kind (Deauthorize, Data Deletion). SQLite cannot
-- change a primary key in place: the table is built again.
CREATE TABLE meta_callbacks_per_kind (
    request_hash       BLOB NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('deauthorize', 'data_deletion')),
    received_at        TEXT NOT NULL,
    confirmation_code  TEXT,
    PRIMARY KEY (request_hash, kind)
);
INSERT INTO meta_callbacks_per_kind SELECT request_hash, kind, received_at, confirmation_code FROM meta_callbacks;
DROP TABLE meta_callbacks;
ALTER TABLE meta_callbacks_per_kind RENAME TO meta_callbacks;
CREATE INDEX meta_callbacks_received_at ON meta_callbacks (received_at);
