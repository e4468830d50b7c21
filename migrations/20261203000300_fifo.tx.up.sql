-- Opt-in FIFO per endpoint (issue 12): a webhook with ordering 'fifo' gets its deliveries
-- attempted strictly in event order. Each of its deliveries carries seq, the EVENTS stream
-- sequence of its event; the dispatcher sends one only when no earlier one of the same webhook
-- is still pending or retrying. Other webhooks' deliveries keep seq NULL and cost nothing.
ALTER TABLE webhook_registrations
    ADD COLUMN ordering text NOT NULL DEFAULT 'none' CHECK (ordering IN ('none', 'fifo'));
ALTER TABLE deliveries ADD COLUMN seq bigint;
-- The deliveries of FIFO webhooks not yet ended (their successes are recorded with an UPDATE,
-- so they leave this index).
CREATE INDEX deliveries_fifo_idx ON deliveries (webhook_id, seq)
    WHERE seq IS NOT NULL AND status IN ('pending', 'retrying');

-- The processor caches whether a webhook is FIFO with who receives an event: a change moves
-- the subscription version.
DROP TRIGGER webhook_registrations_subscription_version_update ON webhook_registrations;
CREATE TRIGGER webhook_registrations_subscription_version_update
    AFTER UPDATE ON webhook_registrations
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.filter IS DISTINCT FROM NEW.filter
                       OR OLD.ordering IS DISTINCT FROM NEW.ordering)
    EXECUTE FUNCTION bump_subscription_version();
