-- Event ids are per user (issue 10): two users who send the same id make two events, while a
-- repeat from one user is still one event. The key of events becomes (id, user_id) (id first:
-- GET /events/{id} of an admin key looks an id up across users), and a file is unique per
-- (event_id, user_id).
--
-- Deliveries keep their ids: a delivery id is derived from (event id, webhook id), and a
-- webhook belongs to one user for good (its user_id cannot change), so the pair is already per
-- user, and an event redelivered across this migration still finds the deliveries it made.
ALTER TABLE events DROP CONSTRAINT events_pkey;
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY (id, user_id);

ALTER TABLE files DROP CONSTRAINT files_event_id_key;
ALTER TABLE files ADD CONSTRAINT files_event_id_user_key UNIQUE (event_id, user_id);
