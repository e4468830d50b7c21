-- Payload filters (issue 12): a webhook may receive only the events that match its filter.
-- The processor caches who receives an event, filters included, and checks the subscription
-- version in its save: a filter change must move that version like enabling or deleting.
ALTER TABLE webhook_registrations ADD COLUMN filter jsonb;

DROP TRIGGER webhook_registrations_subscription_version_update ON webhook_registrations;
CREATE TRIGGER webhook_registrations_subscription_version_update
    AFTER UPDATE ON webhook_registrations
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.filter IS DISTINCT FROM NEW.filter)
    EXECUTE FUNCTION bump_subscription_version();
