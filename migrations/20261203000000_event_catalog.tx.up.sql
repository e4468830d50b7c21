-- The event catalog (issue 12): an event type may carry a JSON Schema (2020-12) for its
-- events' data. The processor checks data against it, and caches who receives an event
-- together with its type's schema, so a schema change must bump the subscription version like
-- a rename does.
ALTER TABLE event_types ADD COLUMN schema jsonb;

DROP TRIGGER event_types_subscription_version ON event_types;
CREATE TRIGGER event_types_subscription_version
    AFTER INSERT OR DELETE OR UPDATE OF name, schema ON event_types
    FOR EACH ROW EXECUTE FUNCTION bump_subscription_version();
