-- A client edits its bot's rules in the portal: each save is a new version, and a save based on an older
-- version than the stored one is refused (someone else saved meanwhile), so no edit is lost unseen.
ALTER TABLE client_settings ADD COLUMN rules_version INTEGER NOT NULL DEFAULT 0;
