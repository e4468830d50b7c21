-- Per-endpoint settings (issue 12): NULL means the service's default (no rate limit,
-- HOOKLINE_ENDPOINT_CONCURRENCY, HOOKLINE_RECEIVER_TIMEOUT), so changing a default applies to
-- every webhook that did not choose. They change how a webhook is sent to, not who receives an
-- event: the dispatcher's cached row (1 s) picks them up, no subscription version is involved.
ALTER TABLE webhook_registrations
    ADD COLUMN rate_limit      integer CHECK (rate_limit BETWEEN 1 AND 100000),
    ADD COLUMN max_concurrency integer CHECK (max_concurrency BETWEEN 1 AND 1024),
    ADD COLUMN timeout_ms      integer CHECK (timeout_ms BETWEEN 100 AND 60000);
