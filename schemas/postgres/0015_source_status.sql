-- What each runtime's reader of a supplier is doing, written by that runtime every few seconds: the
-- per-supplier health the API (`/v1/suppliers`), `cellar status` and the dashboard read. A row whose
-- updated_at is old means no runtime reports on that supplier any more.
CREATE TABLE cellar.source_status (
  supplier_id      text        NOT NULL,
  runtime          text        NOT NULL,   -- 'embedded' or 'capture'
  state            text        NOT NULL CHECK (state IN ('starting', 'snapshotting', 'streaming', 'restarting', 'stopped')),
  detail           text,                   -- the error while restarting; the tables while snapshotting
  snapshot_rows    bigint      NOT NULL DEFAULT 0,
  changes          bigint      NOT NULL DEFAULT 0,
  last_change_at   timestamptz,
  restarts         integer     NOT NULL DEFAULT 0,
  lag_bytes        bigint,                 -- Postgres: WAL the slot retains; MySQL/MariaDB: binlog bytes not yet read
  lag_detail       text,
  state_since      timestamptz NOT NULL DEFAULT now(),
  updated_at       timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (supplier_id, runtime)
);
