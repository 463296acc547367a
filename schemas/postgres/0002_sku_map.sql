-- Supplier SKU → canonical SKU for suppliers whose mapping says `skus: { table: cellar.sku_map }`.
CREATE TABLE cellar.sku_map (
  supplier_id  text        NOT NULL,
  supplier_sku text        NOT NULL,
  sku          text        NOT NULL,
  updated_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (supplier_id, supplier_sku)
);
