-- AI answers: a client's third responder. Its knowledge (plain text or Markdown) and monthly token budget live
-- beside the rules and the relay settings (choosing one keeps the others, so switching back is one command).
ALTER TABLE client_settings DROP CONSTRAINT IF EXISTS client_settings_responder_kind_check;
ALTER TABLE client_settings ADD CONSTRAINT client_settings_responder_kind_check
    CHECK (responder_kind IN ('rules', 'relay', 'ai'));
ALTER TABLE client_settings ADD COLUMN ai_knowledge TEXT;
ALTER TABLE client_settings ADD COLUMN ai_monthly_tokens BIGINT CHECK (ai_monthly_tokens IS NULL OR ai_monthly_tokens >= 0);
ALTER TABLE client_settings ADD COLUMN ai_known_links_only BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE client_settings ADD CONSTRAINT client_settings_ai_has_knowledge
    CHECK (responder_kind <> 'ai' OR ai_knowledge IS NOT NULL);

-- What each client's calendar month (UTC, 'YYYY-MM') used: tokens settled from each answer's usage.
CREATE TABLE ai_months (
    client_id    BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    month        TEXT NOT NULL,
    used_tokens  BIGINT NOT NULL DEFAULT 0,
    calls        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (client_id, month)
);

-- Calls in flight: each reserves its estimate before it is made (checked against the month's budget with the
-- month's row locked, so nodes never both take the last tokens) and is deleted when its usage settles. A
-- reservation whose node died expires and stops counting.
CREATE TABLE ai_reservations (
    id          BIGSERIAL PRIMARY KEY,
    client_id   BIGINT NOT NULL REFERENCES clients (id) ON DELETE CASCADE,
    month       TEXT NOT NULL,
    tokens      BIGINT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX ai_reservations_month ON ai_reservations (client_id, month);
