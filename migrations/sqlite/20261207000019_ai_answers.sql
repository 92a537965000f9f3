-- AI answers: a client's third responder (see the PostgreSQL migration). SQLite cannot change a CHECK in
-- place, so client_settings is rebuilt with the new kind and columns.
CREATE TABLE client_settings_new (
    client_id             INTEGER PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    responder_kind        TEXT NOT NULL DEFAULT 'rules' CHECK (responder_kind IN ('rules', 'relay', 'ai')),
    rules_json            TEXT NOT NULL DEFAULT '{}',
    relay_url             TEXT,
    relay_secret          BLOB,
    relay_key_id          TEXT,
    send_rate_per_second  INTEGER CHECK (send_rate_per_second IS NULL OR send_rate_per_second BETWEEN 1 AND 1000),
    updated_at            TEXT NOT NULL,
    human_pause_secs      INTEGER CHECK (human_pause_secs IS NULL OR human_pause_secs BETWEEN 60 AND 604800),
    rules_version         INTEGER NOT NULL DEFAULT 0,
    ai_knowledge          TEXT,
    ai_monthly_tokens     INTEGER CHECK (ai_monthly_tokens IS NULL OR ai_monthly_tokens >= 0),
    ai_known_links_only   BOOLEAN NOT NULL DEFAULT FALSE,
    CHECK (responder_kind <> 'relay' OR (relay_url IS NOT NULL AND relay_secret IS NOT NULL AND relay_key_id IS NOT NULL)),
    CHECK (responder_kind <> 'ai' OR ai_knowledge IS NOT NULL)
);
INSERT INTO client_settings_new (client_id, responder_kind, rules_json, relay_url, relay_secret, relay_key_id,
    send_rate_per_second, updated_at, human_pause_secs, rules_version)
SELECT client_id, responder_kind, rules_json, relay_url, relay_secret, relay_key_id,
    send_rate_per_second, updated_at, human_pause_secs, rules_version FROM client_settings;
DROP TABLE client_settings;
ALTER TABLE client_settings_new RENAME TO client_settings;

CREATE TABLE ai_months (
    client_id    INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    month        TEXT NOT NULL,
    used_tokens  INTEGER NOT NULL DEFAULT 0,
    calls        INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, month)
);

CREATE TABLE ai_reservations (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id   INTEGER NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    month       TEXT NOT NULL,
    tokens      INTEGER NOT NULL,
    expires_at  TEXT NOT NULL
);
CREATE INDEX ai_reservations_month ON ai_reservations (client_id, month);
