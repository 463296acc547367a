-- Cellar's own tables. Applied by `cellar migrate`; never edit an applied migration, add a new one.
CREATE SCHEMA IF NOT EXISTS cellar;

-- Total stock per region and canonical SKU, written by the Postgres sink, guarded by version.
CREATE TABLE cellar.regional_stock (
  region       text        NOT NULL,
  sku          text        NOT NULL,
  bottles      bigint      NOT NULL,
  contributors integer     NOT NULL,
  version      bigint      NOT NULL,
  source_ts    timestamptz,
  updated_at   timestamptz NOT NULL,
  PRIMARY KEY (region, sku)
);
CREATE INDEX regional_stock_sku ON cellar.regional_stock (sku);

-- Each source row's latest contribution to one (region, sku); deleted rows stay as tombstones.
-- Written by the aggregator as its durable state; `partition` is the observations partition that owns
-- the key, so a restarted aggregator restores only its partitions.
CREATE TABLE cellar.stock_contributions (
  region         text        NOT NULL,
  sku            text        NOT NULL,
  contributor_id text        NOT NULL,
  supplier_id    text        NOT NULL,
  warehouse_id   text        NOT NULL,
  bottles        bigint      NOT NULL,
  source_version text COLLATE "C" NOT NULL,
  source_ts      timestamptz,
  deleted        boolean     NOT NULL DEFAULT false,
  key_version    bigint      NOT NULL,
  partition      integer     NOT NULL,
  PRIMARY KEY (region, sku, contributor_id)
);
CREATE INDEX stock_contributions_partition ON cellar.stock_contributions (partition);
CREATE INDEX stock_contributions_live ON cellar.stock_contributions (contributor_id) WHERE NOT deleted;
CREATE INDEX stock_contributions_supplier ON cellar.stock_contributions (supplier_id) WHERE NOT deleted;

-- Where the normalizer last placed each source row (see pipelines/normalize/normalize.ts, Route).
CREATE TABLE cellar.contributor_routes (
  contributor_id text        PRIMARY KEY,
  supplier_id    text        NOT NULL,
  source_table   text        NOT NULL,
  region         text        NOT NULL,
  sku            text        NOT NULL,
  supplier_sku   text        NOT NULL,
  warehouse_id   text        NOT NULL,
  vintage        integer,
  bottle_size_ml integer     NOT NULL,
  source_version text COLLATE "C" NOT NULL,
  deleted        boolean     NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX contributor_routes_table ON cellar.contributor_routes (supplier_id, source_table) WHERE NOT deleted;

-- Records a stage could not process, with the original bytes, for inspection and replay.
CREATE TABLE cellar.dead_letters (
  id              bigserial   PRIMARY KEY,
  stage           text        NOT NULL,
  reason          text        NOT NULL,
  message         text        NOT NULL,
  supplier_id     text,
  topic           text,
  partition       integer,
  "offset"        text,
  source_position text,
  key             bytea,
  value           bytea,
  created_at      timestamptz NOT NULL DEFAULT now(),
  replayed_at     timestamptz,
  replay_count    integer     NOT NULL DEFAULT 0,
  UNIQUE (stage, topic, partition, "offset")
);
CREATE INDEX dead_letters_reason ON cellar.dead_letters (reason, created_at);

-- Source positions of the embedded runtime, written in the same transaction as the sink writes.
CREATE TABLE cellar.checkpoints (
  source_id  text        PRIMARY KEY,
  position   jsonb       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
