-- Stock events (sold_out, back_in_stock, low_stock), derived from the stock history's effective changes
-- in the transaction that writes them. `id` is deterministic (region, sku, version, type): a replay writes
-- the same rows, kept once. Readers follow the log by (xid, seq): rows of a transaction older than every
-- running one are final, so a cursor over them never skips a row that commits late.
CREATE TABLE cellar.stock_events (
  id         text        PRIMARY KEY,
  seq        bigserial   NOT NULL,
  xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
  type       text        NOT NULL CHECK (type IN ('sold_out', 'back_in_stock', 'low_stock')),
  region     text        NOT NULL,
  sku        text        NOT NULL,
  version    bigint      NOT NULL,
  before     bigint      NOT NULL,
  after      bigint      NOT NULL,
  threshold  bigint,
  source_ts  timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_events_log ON cellar.stock_events (xid, seq);
CREATE INDEX stock_events_created ON cellar.stock_events (created_at);

-- Low-stock thresholds: a total crossing from above `threshold` to at most it (and above zero) is a
-- low_stock event. `region` '*' matches every region; `sku_pattern` is a glob (`*` any run of characters).
-- The most specific rule wins: an exact region before '*', then the longest pattern.
CREATE TABLE cellar.stock_thresholds (
  region      text        NOT NULL,
  sku_pattern text        NOT NULL,
  threshold   bigint      NOT NULL CHECK (threshold > 0),
  updated_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (region, sku_pattern)
);

-- Where each follower of the event log is: the topic relay, each webhook subscription.
CREATE TABLE cellar.event_cursors (
  consumer   text        PRIMARY KEY,
  xid        xid8        NOT NULL,
  seq        bigint      NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
