DROP TRIGGER event_types_subscription_version ON event_types;
CREATE TRIGGER event_types_subscription_version
    AFTER INSERT OR DELETE OR UPDATE OF name ON event_types
    FOR EACH ROW EXECUTE FUNCTION bump_subscription_version();

ALTER TABLE event_types DROP COLUMN schema;
