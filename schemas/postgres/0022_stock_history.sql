-- Every effective change of a regional total: the key's version after it (deterministic: replays write
-- the same rows, kept once), the total after it and its delta, the contributor that moved it and its
-- source time. Partitioned by day of source time: retention drops whole partitions. Rows whose day has
-- no partition (times before the partitions kept, or far ahead) land in the default partition. The
-- primary key serves every read (a key's changes, a region as of a time): no other index to keep up.
CREATE TABLE cellar.stock_history (
  region         text        NOT NULL,
  sku            text        NOT NULL,
  version        bigint      NOT NULL,
  bottles        bigint      NOT NULL,
  delta          bigint      NOT NULL,
  source_ts      timestamptz NOT NULL,
  contributor_id text        NOT NULL,
  supplier_id    text        NOT NULL,
  warehouse_id   text        NOT NULL,
  op             text        NOT NULL,
  recorded_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (region, sku, version, source_ts)
) PARTITION BY RANGE (source_ts);
CREATE TABLE cellar.stock_history_default PARTITION OF cellar.stock_history DEFAULT;
