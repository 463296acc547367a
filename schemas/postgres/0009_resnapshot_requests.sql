-- `cellar resnapshot --supplier X`: the running embedded runtime takes the request, snapshots the
-- supplier's tables again (each starting with a truncate, so rows gone meanwhile stop counting) and
-- records when it took and finished it.
CREATE TABLE cellar.resnapshot_requests (
  id            bigserial   PRIMARY KEY,
  supplier_id   text        NOT NULL,
  requested_at  timestamptz NOT NULL DEFAULT now(),
  taken_at      timestamptz,
  requested_by  text
);
CREATE INDEX resnapshot_requests_open ON cellar.resnapshot_requests (supplier_id) WHERE taken_at IS NULL;
