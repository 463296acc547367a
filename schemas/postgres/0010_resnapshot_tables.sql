-- `cellar resnapshot --supplier X --table T …`: the tables to snapshot again (null: every table of the
-- supplier), which runtime took the request (`embedded`, or `capture:<supplier>` for `cellar run
-- capture`), and when it recorded the end of that snapshot (the embedded runtime: committed; a capture:
-- published to the raw topics).
ALTER TABLE cellar.resnapshot_requests
  ADD COLUMN tables      text[],
  ADD COLUMN taken_by    text,
  ADD COLUMN finished_at timestamptz;
