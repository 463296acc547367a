-- A feed's remembered rows keep their values and version: reconciliation compares Cellar's totals with
-- the rows the supplier's last file (or its pushed requests) left, and a pushed change older than the
-- remembered row (by the supplier's own `_version`) never replaces it. Rows remembered before this
-- migration have neither until the next file or request touches them (reconciliation says so).
ALTER TABLE cellar.feed_rows
  ADD COLUMN row_version bigint,
  ADD COLUMN row_values  jsonb;
