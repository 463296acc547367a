-- The history's SKUs in C order (code points), whatever the database's collation: `GET /v1/stock/{region}?asOf=`
-- pages SKUs in C order, and with the primary key (region, sku, version, source_ts) in that order too, as-of
-- reads walk it SKU by SKU (one probe per day partition and SKU of the page) instead of reading every change
-- of the region up to the time. Not a new index: the same primary key, so writes cost the same (C comparisons
-- are, if anything, cheaper). SKU equality is unchanged (deterministic collations); a comparison with a
-- default-collation column (regional_stock.sku) now compares in C. The table is not rewritten, but the primary
-- key of every partition is rebuilt, under a lock that holds history writes for that time.
ALTER TABLE cellar.stock_history ALTER COLUMN sku TYPE text COLLATE "C";
