-- Totals and contributions are updated in place far more often than inserted. Free space on each page
-- lets Postgres apply those updates as HOT updates (no index changes: the indexed columns never change).
ALTER TABLE cellar.regional_stock SET (fillfactor = 70);
ALTER TABLE cellar.stock_contributions SET (fillfactor = 70);
ALTER TABLE cellar.contributor_routes SET (fillfactor = 70);
