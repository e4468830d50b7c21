DROP TRIGGER IF EXISTS event_types_subscription_version ON event_types;
DROP TRIGGER IF EXISTS webhook_configurations_subscription_version ON webhook_configurations;
DROP TRIGGER IF EXISTS webhook_registrations_subscription_version_update ON webhook_registrations;
DROP TRIGGER IF EXISTS webhook_registrations_subscription_version ON webhook_registrations;
DROP FUNCTION IF EXISTS bump_subscription_version();
DROP TABLE IF EXISTS subscription_version;
DROP VIEW IF EXISTS delivery_states;
-- Make the derived state explicit again before the old index comes back.
UPDATE deliveries d SET status = 'succeeded', attempt_count = a.attempt, last_status_code = a.status_code,
       next_attempt_at = NULL, updated_at = a.created_at
FROM delivery_attempts a
WHERE d.status = 'pending' AND a.delivery_id = d.id AND a.attempt = d.attempt_count + 1
  AND a.status_code BETWEEN 200 AND 299 AND a.error IS NULL;
UPDATE deliveries SET next_attempt_at = NULL WHERE status = 'pending';
ALTER TABLE rejected_events ALTER COLUMN payload TYPE text USING encode(payload, 'escape');
DROP TABLE IF EXISTS reconciler_marks;
DROP INDEX IF EXISTS deliveries_created_brin;
DROP INDEX IF EXISTS events_received_brin;
CREATE INDEX events_received_idx ON events (received_at);
DROP INDEX IF EXISTS deliveries_claimed_idx;
CREATE INDEX deliveries_inflight_idx ON deliveries (updated_at) WHERE status = 'pending';
