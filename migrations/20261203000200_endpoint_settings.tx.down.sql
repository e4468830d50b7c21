ALTER TABLE webhook_registrations
    DROP COLUMN rate_limit,
    DROP COLUMN max_concurrency,
    DROP COLUMN timeout_ms;
