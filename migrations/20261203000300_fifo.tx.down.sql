DROP TRIGGER webhook_registrations_subscription_version_update ON webhook_registrations;
CREATE TRIGGER webhook_registrations_subscription_version_update
    AFTER UPDATE ON webhook_registrations
    FOR EACH ROW WHEN (OLD.enabled IS DISTINCT FROM NEW.enabled OR OLD.deleted_at IS DISTINCT FROM NEW.deleted_at
                       OR OLD.user_id IS DISTINCT FROM NEW.user_id OR OLD.filter IS DISTINCT FROM NEW.filter)
    EXECUTE FUNCTION bump_subscription_version();
DROP INDEX IF EXISTS deliveries_fifo_idx;
ALTER TABLE deliveries DROP COLUMN IF EXISTS seq;
ALTER TABLE webhook_registrations DROP COLUMN IF EXISTS ordering;
