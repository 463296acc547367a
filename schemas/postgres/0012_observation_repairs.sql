-- Corrections below the normalizer: a StockObservation (JSON) the embedded runtime applies to its
-- aggregator directly, for contributions no source row can correct (a row counted under two keys, a key
-- whose contributors are all deleted). Such a request has no source table or Debezium value.
ALTER TABLE cellar.repair_requests ADD COLUMN observation jsonb;
ALTER TABLE cellar.repair_requests ALTER COLUMN source_table DROP NOT NULL;
ALTER TABLE cellar.repair_requests ALTER COLUMN value DROP NOT NULL;
ALTER TABLE cellar.repair_requests ADD CONSTRAINT repair_requests_one_kind CHECK ((observation IS NULL) = (value IS NOT NULL AND source_table IS NOT NULL));
