-- The state event a state event replaced (unsigned.replaces_state / prev_content for clients).
ALTER TABLE events ADD COLUMN replaces_state TEXT;
