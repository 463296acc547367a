-- Requests to a running runtime (`cellar reload`): taken by the runtime that runs this database's
-- suppliers, which writes its outcome (what it added, removed and changed, or every problem of a rejected
-- configuration) so the command can report it.
CREATE TABLE cellar.control_requests (
  id           bigserial   PRIMARY KEY,
  action       text        NOT NULL CHECK (action IN ('reload')),
  requested_by text,
  requested_at timestamptz NOT NULL DEFAULT now(),
  handled_at   timestamptz,
  handled_by   text,
  outcome      jsonb
);
CREATE INDEX control_requests_open ON cellar.control_requests (id) WHERE handled_at IS NULL;
