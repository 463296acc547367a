-- The rows a file feed's last applied file left, per source (the embedded runtime's supplier id, or
-- `capture:<supplier>`): key (the key columns' values as a JSON array) and a digest of the row's values.
-- The next file is compared with them, so only real changes flow. Written in the transaction that writes
-- the feed's checkpoint (the file's content hash), so the two never disagree after a crash.
CREATE TABLE cellar.feed_rows (
  source_id text NOT NULL,
  row_key   text NOT NULL,
  row_hash  text NOT NULL,
  PRIMARY KEY (source_id, row_key)
);
