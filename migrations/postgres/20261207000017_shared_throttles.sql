-- Sign-in and "Connect with Facebook" throttles, counted where every node sees them and a restart keeps them:
-- one row per (scope, key, fixed window); the key is a keyed hash (no e-mail or address is stored). Old
-- windows are pruned every few minutes.
CREATE TABLE throttle_hits (
    scope       TEXT NOT NULL,
    key_hash    TEXT NOT NULL,
    window_end  BIGINT NOT NULL,
    hits        BIGINT NOT NULL,
    PRIMARY KEY (scope, key_hash, window_end)
);
CREATE INDEX throttle_hits_window_end ON throttle_hits (window_end);

-- The public result page of a Facebook Login has an address of its own, not derived from the OAuth state.
ALTER TABLE oauth_states ADD COLUMN result_id TEXT;
CREATE UNIQUE INDEX oauth_states_result_id ON oauth_states (result_id);
