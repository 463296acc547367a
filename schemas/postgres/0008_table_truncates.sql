-- The newest TRUNCATE seen of each captured table. Normalizers on other partitions read it: a change of
-- that table older than the truncate changes nothing, and a route one of them placed while the truncate
-- was being processed is removed at the truncate's version (see pipelines/normalize/batch.ts).
CREATE TABLE cellar.table_truncates (
  supplier_id    text        NOT NULL,
  source_table   text        NOT NULL,
  source_version text COLLATE "C" NOT NULL,
  source_ts      timestamptz,
  updated_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (supplier_id, source_table)
);
