-- Stock identity includes the bottle size: every canonical SKU has exactly one bottle size.

-- The canonical catalog: each canonical SKU's bottle size (and optional vintage and name). Rows with
-- origin 'import' come from `cellar catalog import`; rows with origin 'observed' pin the size first seen
-- for a SKU the catalog did not list, so that a second size can never be summed under the same SKU.
CREATE TABLE cellar.catalog (
  sku             text        PRIMARY KEY,
  bottle_size_ml  integer     NOT NULL CHECK (bottle_size_ml > 0),
  vintage         integer,
  name            text,
  origin          text        NOT NULL CHECK (origin IN ('import', 'observed')),
  -- For observed rows: the supplier whose change pinned the size.
  first_supplier  text,
  updated_at      timestamptz NOT NULL DEFAULT now()
);

-- SKU maps keyed by more than the supplier SKU: an entry may also name a vintage and/or a bottle size
-- (NULL = any). The most specific matching entry wins.
ALTER TABLE cellar.sku_map ADD COLUMN vintage integer, ADD COLUMN bottle_size_ml integer CHECK (bottle_size_ml > 0);
ALTER TABLE cellar.sku_map DROP CONSTRAINT sku_map_pkey;
CREATE UNIQUE INDEX sku_map_entry ON cellar.sku_map (supplier_id, supplier_sku, coalesce(vintage, -1), coalesce(bottle_size_ml, -1));

-- Totals and contributions carry the bottle size of their SKU. NULL: written before sizes were kept.
ALTER TABLE cellar.regional_stock ADD COLUMN bottle_size_ml integer;
ALTER TABLE cellar.stock_contributions ADD COLUMN bottle_size_ml integer;
UPDATE cellar.stock_contributions c SET bottle_size_ml = r.bottle_size_ml
  FROM cellar.contributor_routes r WHERE r.contributor_id = c.contributor_id AND r.sku = c.sku AND r.region = c.region;

-- Dead letters of the embedded runtime name their source table, so that `cellar dlq replay` can hand
-- them back to the runtime (through cellar.repair_requests) after the fix.
ALTER TABLE cellar.dead_letters ADD COLUMN source_table text;
