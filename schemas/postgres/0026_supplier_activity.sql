-- What the Kafka runtime's normalizers received from each supplier's raw topics, whoever wrote them
-- (Debezium on Kafka Connect, or `cellar run capture`): the only place Cellar sees a Debezium supplier's
-- changes arrive. Every normalizer adds its counts every few seconds; `cellar status`, `/v1/suppliers` and
-- the dashboard show the last change from here when no reader of Cellar's reports on the supplier.
CREATE TABLE cellar.supplier_activity (
  supplier_id      text        PRIMARY KEY,
  changes          bigint      NOT NULL DEFAULT 0,   -- raw messages normalized since the table was created
  last_change_at   timestamptz NOT NULL,             -- when a normalizer last received one
  last_source_ts   timestamptz,                      -- the newest source commit time among them (null: none carried one)
  updated_at       timestamptz NOT NULL DEFAULT now()
);
