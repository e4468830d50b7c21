DROP INDEX IF EXISTS rejected_events_received_brin;
DROP INDEX IF EXISTS rejected_events_user_idx;
ALTER TABLE rejected_events DROP COLUMN IF EXISTS user_id;
