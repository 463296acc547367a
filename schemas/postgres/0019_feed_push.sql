-- HTTP push: a `supplier` role whose keys may write only their own supplier's feed.
ALTER TABLE cellar.api_keys DROP CONSTRAINT IF EXISTS api_keys_role_check;
ALTER TABLE cellar.api_keys ADD COLUMN supplier_id text;
ALTER TABLE cellar.api_keys ADD CONSTRAINT api_keys_role_check CHECK (role IN ('supplier', 'reader', 'operator', 'admin'));
ALTER TABLE cellar.api_keys ADD CONSTRAINT api_keys_supplier_scope CHECK ((role = 'supplier') = (supplier_id IS NOT NULL));

-- Requests a supplier pushed, accepted and waiting for the runtime (embedded, or `cellar run capture`) to
-- apply them in id order (arrival order); rows are deleted in the transaction that checkpoints past them.
CREATE TABLE cellar.feed_inbox (
  id          bigserial   PRIMARY KEY,
  supplier_id text        NOT NULL,
  mode        text        NOT NULL CHECK (mode IN ('changes', 'snapshot')),
  rows        jsonb       NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX feed_inbox_supplier ON cellar.feed_inbox (supplier_id, id);

-- The answers to pushed requests by Idempotency-Key: a retried request gets the first answer again and is
-- applied once. Kept 24 hours.
CREATE TABLE cellar.feed_requests (
  supplier_id     text        NOT NULL,
  idempotency_key text        NOT NULL,
  body_sha256     text        NOT NULL,
  status          integer     NOT NULL,
  answer          jsonb       NOT NULL,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (supplier_id, idempotency_key)
);
