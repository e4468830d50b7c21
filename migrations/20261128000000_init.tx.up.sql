-- Hookline's first schema: the seed's tables (event_types, webhook_registrations,
-- webhook_configurations, error_log) and the event-driven ones.

CREATE TABLE event_types (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now()
);

INSERT INTO event_types (name, description)
VALUES ('upload.completed', 'Event type for file upload operations');

CREATE TABLE webhook_registrations (
    id                     uuid PRIMARY KEY,
    user_id                bigint NOT NULL CHECK (user_id > 0),
    url                    text NOT NULL,
    secret                 text NOT NULL,
    previous_secret        text,
    previous_secret_until  timestamptz,
    enabled                boolean NOT NULL DEFAULT true,
    disabled_reason        text,
    disabled_at            timestamptz,
    failing_since          timestamptz,
    deleted_at             timestamptz,
    created_at             timestamptz NOT NULL DEFAULT now(),
    updated_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_registrations_user_idx ON webhook_registrations (user_id) WHERE deleted_at IS NULL;

-- One row per (webhook, subscribed event type), carrying that subscription's custom headers
-- and payload as the seed did.
CREATE TABLE webhook_configurations (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    webhook_id     uuid NOT NULL REFERENCES webhook_registrations (id) ON DELETE CASCADE,
    event_type_id  uuid NOT NULL REFERENCES event_types (id),
    custom_headers jsonb NOT NULL DEFAULT '{}',
    custom_payload jsonb NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (webhook_id, event_type_id)
);
CREATE INDEX webhook_configurations_type_idx ON webhook_configurations (event_type_id);

-- Every accepted event, kept so that a delivery can be re-rendered after the stream dropped it.
CREATE TABLE events (
    id          text PRIMARY KEY,
    type        text NOT NULL,
    user_id     bigint NOT NULL,
    webhook_id  uuid,
    occurred_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    data        jsonb NOT NULL
);
CREATE INDEX events_received_idx ON events (received_at);

-- Events that could not be accepted: terminated on the stream, kept here for an operator.
CREATE TABLE rejected_events (
    id          bigserial PRIMARY KEY,
    event_id    text,
    subject     text NOT NULL,
    reason      text NOT NULL,
    payload     text NOT NULL,
    stream_seq  bigint UNIQUE,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE files (
    id           uuid PRIMARY KEY,
    event_id     text NOT NULL UNIQUE,
    webhook_id   uuid NOT NULL,
    user_id      bigint NOT NULL,
    file_name    text NOT NULL,
    object_name  text NOT NULL,
    size         bigint NOT NULL,
    content_type text NOT NULL,
    sha256       text NOT NULL,
    uploaded_at  timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_webhook_idx ON files (webhook_id);

-- One row per (event, target webhook). The body is rendered once and kept, so every attempt
-- sends the same bytes. status moves pending -> retrying -> ... -> succeeded | failed by
-- compare-and-set on attempt_count.
CREATE TABLE deliveries (
    id               uuid PRIMARY KEY,
    event_id         text NOT NULL,
    webhook_id       uuid NOT NULL REFERENCES webhook_registrations (id),
    user_id          bigint NOT NULL,
    event_type       text NOT NULL,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'retrying', 'succeeded', 'failed')),
    attempt_count    integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    last_status_code integer,
    payload          bytea NOT NULL,
    occurred_at      timestamptz NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
    -- (event_id, webhook_id) is unique through the id itself: UUIDv5 of the pair.
);
CREATE INDEX deliveries_webhook_idx ON deliveries (webhook_id, created_at DESC, id DESC);
CREATE INDEX deliveries_due_idx ON deliveries (next_attempt_at) WHERE status = 'retrying';
CREATE INDEX deliveries_inflight_idx ON deliveries (updated_at) WHERE status = 'pending';

CREATE TABLE delivery_attempts (
    delivery_id      uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    attempt          integer NOT NULL,
    status_code      integer,
    error            text,
    latency_ms       double precision NOT NULL,
    response_excerpt text NOT NULL DEFAULT '',
    created_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (delivery_id, attempt)
);

-- The seed's log of failed deliveries: one row per delivery that ended failed (per attempt
-- number, so a retried delivery that fails again adds a row).
CREATE TABLE error_log (
    id          bigserial PRIMARY KEY,
    delivery_id uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    webhook_id  uuid NOT NULL,
    event_id    text NOT NULL,
    attempt     integer NOT NULL,
    error       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (delivery_id, attempt)
);

CREATE TABLE api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    key_hash   bytea NOT NULL UNIQUE,
    user_id    bigint CHECK (user_id > 0),
    admin      boolean NOT NULL DEFAULT false,
    name       text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK (admin OR user_id IS NOT NULL)
);
