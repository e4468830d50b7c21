-- rejected_events is bounded (issue 10): rows older than HOOKLINE_REJECTED_RETENTION go, and at
-- most HOOKLINE_REJECTED_PER_USER rows are kept per user (the newest). user_id is the event's
-- user when the event decoded, 0 when it did not (malformed: one bucket for all of them).
ALTER TABLE rejected_events ADD COLUMN user_id bigint NOT NULL DEFAULT 0;
CREATE INDEX rejected_events_user_idx ON rejected_events (user_id, id);
CREATE INDEX rejected_events_received_brin ON rejected_events USING brin (received_at);
