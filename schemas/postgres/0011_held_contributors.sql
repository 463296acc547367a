-- Contributors held at their last valid state: a change of the source row was dead-lettered (a NULL
-- quantity, an unknown warehouse or unit…), so the row keeps counting what it last validly said. A later
-- valid change, a delete, a truncate or a replay of the dead letter after the mapping is fixed releases it.
-- Written by the normalizer of both runtimes; read by the API (per key and per supplier), the dashboard,
-- reconciliation and `cellar held`.
CREATE TABLE cellar.held_contributors (
  contributor_id text        PRIMARY KEY,
  supplier_id    text        NOT NULL,
  source_table   text        NOT NULL,
  region         text        NOT NULL,
  sku            text        NOT NULL,
  reason         text        NOT NULL,
  message        text        NOT NULL,
  -- The source version of the refused change: only a newer valid change releases the contributor.
  held_version   text COLLATE "C" NOT NULL,
  held_since     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX held_contributors_key ON cellar.held_contributors (region, sku);
CREATE INDEX held_contributors_supplier ON cellar.held_contributors (supplier_id, reason);

-- Dead letters of the embedded runtime carry no Kafka offset; this key (the commit group and the
-- letter's place in it) makes a commit retried after an unknown outcome write them once.
ALTER TABLE cellar.dead_letters ADD COLUMN dedupe_key text UNIQUE;
