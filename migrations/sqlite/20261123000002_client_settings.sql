-- Per-client engine settings: which responder answers the client's pages, and its send rate.
-- relay_secret is sealed by the vault (AES-256-GCM, bound to the client id), like page tokens.
CREATE TABLE client_settings (
    client_id             INTEGER PRIMARY KEY REFERENCES clients (id) ON DELETE CASCADE,
    responder_kind        TEXT NOT NULL DEFAULT 'rules' CHECK (responder_kind IN ('rules', 'relay')),
    rules_json            TEXT NOT NULL DEFAULT '{}',
    relay_url             TEXT,
    relay_secret          BLOB,
    relay_key_id          TEXT,
    send_rate_per_second  INTEGER CHECK (send_rate_per_second IS NULL OR send_rate_per_second BETWEEN 1 AND 1000),
    updated_at            TEXT NOT NULL,
    CHECK (responder_kind <> 'relay' OR (relay_url IS NOT NULL AND relay_secret IS NOT NULL AND relay_key_id IS NOT NULL))
);
