-- Reconciliation: one row per run, one row per difference found, and the repair requests the embedded
-- runtime applies through its normal path (see pipelines/reconcile/).
CREATE TABLE cellar.reconciliation_runs (
  id             bigserial   PRIMARY KEY,
  supplier_id    text        NOT NULL,
  started_at     timestamptz NOT NULL DEFAULT now(),
  finished_at    timestamptz,
  rows_compared  bigint      NOT NULL DEFAULT 0,
  drifted_keys   integer     NOT NULL DEFAULT 0,
  repaired       integer     NOT NULL DEFAULT 0,
  -- Keys still changing at the source after every re-check: in flight, not drift.
  unsettled      integer     NOT NULL DEFAULT 0,
  -- running | clean | drift | repaired | failed
  outcome        text        NOT NULL DEFAULT 'running',
  trigger        text        NOT NULL DEFAULT 'cli',
  error          text
);
CREATE INDEX reconciliation_runs_supplier ON cellar.reconciliation_runs (supplier_id, started_at DESC);

CREATE TABLE cellar.reconciliation_drift (
  id             bigserial   PRIMARY KEY,
  run_id         bigint      NOT NULL REFERENCES cellar.reconciliation_runs (id) ON DELETE CASCADE,
  -- contribution (a source row vs cellar.stock_contributions), regional_total (cellar.regional_stock vs the
  -- sum of contributions), redis (cellar:stock:<region> vs cellar.regional_stock)
  kind           text        NOT NULL,
  region         text,
  sku            text,
  contributor_id text,
  expected       jsonb,
  actual         jsonb,
  likely_cause   text        NOT NULL,
  repaired       boolean     NOT NULL DEFAULT false
);
CREATE INDEX reconciliation_drift_run ON cellar.reconciliation_drift (run_id);

CREATE TABLE cellar.repair_requests (
  id             bigserial   PRIMARY KEY,
  run_id         bigint      REFERENCES cellar.reconciliation_runs (id) ON DELETE SET NULL,
  supplier_id    text        NOT NULL,
  source_table   text        NOT NULL,
  -- Debezium JSON key and value of the correction (op r or d, with source.cellar_version)
  key            text,
  value          text        NOT NULL,
  created_at     timestamptz NOT NULL DEFAULT now()
);
