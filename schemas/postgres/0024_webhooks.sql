-- Webhooks: subscriptions to the stock event log (cellar.stock_events), each followed with its own cursor
-- (`webhook:<id>` in cellar.event_cursors), and one delivery row per matching event.

-- A subscription: where to POST (http or https), which events (a filter as StockEventFilter: types, region,
-- sku, skuPrefix; `{}` = every event), and the secret deliveries are signed with (HMAC-SHA256). The secret
-- is shown once when generated and never answered by a read; `max_attempts` null: the dispatcher's default.
-- A disabled subscription still records its deliveries (pending); they go out once it is enabled again.
CREATE TABLE cellar.webhook_subscriptions (
  id           text        PRIMARY KEY CHECK (id ~ '^wh_[0-9a-f]{16}$'),
  url          text        NOT NULL CHECK (url ~ '^https?://'),
  filter       jsonb       NOT NULL DEFAULT '{}',
  secret       text        NOT NULL,
  description  text        NOT NULL DEFAULT '',
  enabled      boolean     NOT NULL DEFAULT true,
  max_attempts integer     CHECK (max_attempts BETWEEN 1 AND 100),
  created_at   timestamptz NOT NULL DEFAULT now(),
  updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One event for one subscription, written with the subscription's cursor (so each matching event gets
-- exactly one row, however often the log is read). A dispatcher claims a due pending row by moving
-- `next_attempt_at` a lease ahead and counting the attempt, sends outside any transaction, then records the
-- outcome: `delivered`, or pending again after a backoff, or `dead` after max_attempts. `seq` orders the
-- delivery log (paging). `last_error` is written by Cellar and never holds the secret.
CREATE TABLE cellar.webhook_deliveries (
  subscription_id text        NOT NULL REFERENCES cellar.webhook_subscriptions (id) ON DELETE CASCADE,
  event_id        text        NOT NULL,
  seq             bigserial   NOT NULL,
  event           jsonb       NOT NULL,
  status          text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
  attempts        integer     NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_attempt_at timestamptz,
  last_status     integer,
  last_error      text,
  delivered_at    timestamptz,
  created_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (subscription_id, event_id)
);
-- What a dispatcher claims: a subscription's due pending rows.
CREATE INDEX webhook_deliveries_due ON cellar.webhook_deliveries (subscription_id, next_attempt_at) WHERE status = 'pending';
-- The delivery log of a subscription, in the order its events were taken.
CREATE INDEX webhook_deliveries_log ON cellar.webhook_deliveries (subscription_id, seq);
-- Retention of finished rows.
CREATE INDEX webhook_deliveries_created ON cellar.webhook_deliveries (created_at) WHERE status <> 'pending';
