-- The append-only hot path (issue 9). A delivery whose first attempt succeeds is recorded by
-- its delivery_attempts row alone: the deliveries row keeps status 'pending' and attempt_count
-- 0, and the view delivery_states derives what the API shows. Every other path (retry,
-- failure, hand-back, manual retry, a success after a retry) still updates the row with
-- compare-and-set, as before.

-- A first-attempt success leaves its row 'pending' for good, so this index would grow with
-- every delivery; it is replaced by the two below.
DROP INDEX deliveries_inflight_idx;

-- Deliveries the scheduler (or the reconciler) published: 'pending' with next_attempt_at
-- kept at the time the attempt was due. The reconciler republishes those that have not moved.
CREATE INDEX deliveries_claimed_idx ON deliveries (updated_at)
    WHERE status = 'pending' AND next_attempt_at IS NOT NULL;

-- The reconciler walks first attempts in created_at order past a durable mark; a BRIN index
-- costs next to nothing on an append-only table.
CREATE INDEX deliveries_created_brin ON deliveries USING brin (created_at);

-- Retention prunes events by received_at, which only grows: a BRIN index serves that range
-- and costs next to nothing per insert, unlike the B-tree it replaces.
DROP INDEX events_received_idx;
CREATE INDEX events_received_brin ON events USING brin (received_at);

CREATE TABLE reconciler_marks (
    name text PRIMARY KEY,
    mark timestamptz NOT NULL
);
-- Start at the oldest delivery still pending, so nothing published before this migration is
-- skipped.
INSERT INTO reconciler_marks (name, mark)
SELECT 'first_attempts', COALESCE(min(created_at) - interval '1 microsecond', now())
FROM deliveries WHERE status = 'pending';

-- A rejected event keeps its exact bytes, whatever they are (NUL, invalid UTF-8).
ALTER TABLE rejected_events ALTER COLUMN payload TYPE bytea USING convert_to(payload, 'UTF8');

-- What a delivery is, as the API shows it: a 2xx attempt right after the row's attempt_count
-- on a pending row is a first-attempt success recorded without an UPDATE.
CREATE VIEW delivery_states AS
SELECT d.id, d.webhook_id, d.user_id, d.event_id, d.event_type,
       CASE WHEN s.attempt IS NOT NULL THEN 'succeeded' ELSE d.status END AS status,
       COALESCE(s.attempt, d.attempt_count) AS attempt_count,
       CASE WHEN s.attempt IS NULL AND d.status = 'retrying' THEN d.next_attempt_at END AS next_attempt_at,
       COALESCE(s.status_code, d.last_status_code) AS last_status_code,
       d.created_at,
       COALESCE(s.created_at, d.updated_at) AS updated_at
FROM deliveries d
LEFT JOIN delivery_attempts s
       ON d.status = 'pending' AND s.delivery_id = d.id AND s.attempt = d.attempt_count + 1
      AND s.status_code BETWEEN 200 AND 299 AND s.error IS NULL;

-- Who receives an event changes rarely; the processor caches it and checks, inside the
-- statement that saves a batch, that this version has not moved since (or re-resolves).
CREATE TABLE subscription_version (
    one     boolean PRIMARY KEY DEFAULT true CHECK (one),
    version bigint NOT NULL
);
INSERT INTO subscription_version (version) VALUES (1);

CREATE FUNCTION bump_subscription_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE subscription_version SET version = version + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER webhook_registrations_subscription_version
    AFTER INSERT OR DELETE ON webhook_registrations
    FOR EACH ROW EXECUTE FUNCTION bump_subscription_version();
CREATE TRIGGER webhook_registrations_subscription_version_update
    AFTER UPDATE ON webhook_registrations
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id)
    EXECUTE FUNCTION bump_subscription_version();
CREATE TRIGGER webhook_configurations_subscription_version
    AFTER INSERT OR DELETE OR UPDATE ON webhook_configurations
    FOR EACH ROW EXECUTE FUNCTION bump_subscription_version();
CREATE TRIGGER event_types_subscription_version
    AFTER INSERT OR DELETE OR UPDATE OF name ON event_types
    FOR EACH ROW EXECUTE FUNCTION bump_subscription_version();
