-- Every process that reads supplier files answers a reload request on its own: the embedded runtime, each
-- Kafka-runtime normalizer and each `cellar run capture`. One row per request and process, so
-- `cellar reload` reports what each of them did (added, removed, changed, or why it refused the files).
CREATE TABLE cellar.control_answers (
  request_id  bigint      NOT NULL REFERENCES cellar.control_requests (id) ON DELETE CASCADE,
  answered_by text        NOT NULL,
  answered_at timestamptz NOT NULL DEFAULT now(),
  outcome     jsonb       NOT NULL,
  PRIMARY KEY (request_id, answered_by)
);
CREATE INDEX control_requests_recent ON cellar.control_requests (requested_at);

-- The processes that take requests, each marking when it last looked (every second): `cellar reload` waits
-- for an answer from each one that looked recently, and names any that did not answer.
CREATE TABLE cellar.control_listeners (
  name      text        PRIMARY KEY,
  last_poll timestamptz NOT NULL DEFAULT now()
);
