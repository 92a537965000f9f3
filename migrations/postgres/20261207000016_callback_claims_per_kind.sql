-- Meta may send one signed_request payload (same user, same second) to both the Deauthorize and the Data
-- Deletion callbacks: a claim is per callback kind, so handling one never makes the other look handled.
ALTER TABLE meta_callbacks DROP CONSTRAINT meta_callbacks_pkey;
ALTER TABLE meta_callbacks ADD PRIMARY KEY (request_hash, kind);
