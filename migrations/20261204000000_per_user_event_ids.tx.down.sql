-- Back to one event per id. An id that several users sent stays with the smallest user_id; the
-- others' become '<user_id>:<id>' in events, files, deliveries and error_log alike, so nothing
-- is deleted and every row still finds its event.
CREATE TEMP TABLE shared_event_ids ON COMMIT DROP AS
SELECT id, user_id FROM (
    SELECT id, user_id, min(user_id) OVER (PARTITION BY id) AS first FROM (
        SELECT id, user_id FROM events
        UNION SELECT event_id, user_id FROM files
        UNION SELECT event_id, user_id FROM deliveries
    ) AS every_id
) AS x
WHERE user_id <> first;

UPDATE error_log l SET event_id = d.user_id || ':' || l.event_id
FROM deliveries d, shared_event_ids s
WHERE l.delivery_id = d.id AND s.id = l.event_id AND s.user_id = d.user_id;
UPDATE deliveries d SET event_id = d.user_id || ':' || d.event_id
FROM shared_event_ids s WHERE s.id = d.event_id AND s.user_id = d.user_id;
UPDATE files f SET event_id = f.user_id || ':' || f.event_id
FROM shared_event_ids s WHERE s.id = f.event_id AND s.user_id = f.user_id;
UPDATE events e SET id = e.user_id || ':' || e.id
FROM shared_event_ids s WHERE s.id = e.id AND s.user_id = e.user_id;

ALTER TABLE files DROP CONSTRAINT files_event_id_user_key;
ALTER TABLE files ADD CONSTRAINT files_event_id_key UNIQUE (event_id);

ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id);
