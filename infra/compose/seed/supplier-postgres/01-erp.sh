#!/bin/bash
# Seeds the "loire-estates" ERP: a stock table counting 12-bottle cases, a CDC role for Debezium (and Cellar's
# native reader), and Debezium's signal table for on-demand re-snapshots. Runs once, on an empty data folder.
set -euo pipefail
psql -v ON_ERROR_STOP=1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -v cdc_password="$LOIRE_PG_PASSWORD" <<'SQL'
CREATE TABLE public.stock_positions (
  id         serial PRIMARY KEY,
  item_code  text    NOT NULL,
  depot      text    NOT NULL,
  cases      integer NOT NULL,
  vintage    integer,
  bottle_ml  integer NOT NULL DEFAULT 750,
  updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO public.stock_positions (item_code, depot, cases, vintage, bottle_ml) VALUES
  ('LE-SANC-22', 'NTE-01', 40, 2022, 750),
  ('LE-SANC-22', 'TRS-02', 15, 2022, 750),
  ('LE-CHIN-20', 'NTE-01', 22, 2020, 750),
  ('LE-CHIN-20', 'PAR-03', 8,  2020, 750),
  ('LE-VOUV-21', 'PAR-03', 30, 2021, 750),
  ('LE-VOUV-21', 'TRS-02', 5,  2021, 1500);

-- Debezium's signal table (signal.data.collection = public.debezium_signal): an INSERT of an
-- 'execute-snapshot' row re-reads the named tables without stopping the stream (docs/OPERATIONS.md).
CREATE TABLE public.debezium_signal (id varchar(64) PRIMARY KEY, type varchar(32) NOT NULL, data text);

-- The CDC role: REPLICATION and SELECT; the tables belong to a group it shares with the application, so
-- it may create the publication Debezium (pgoutput) or Cellar's reader needs.
CREATE ROLE erp_owners NOLOGIN;
GRANT erp_owners TO erp;
CREATE ROLE cellar_cdc WITH LOGIN REPLICATION PASSWORD :'cdc_password' IN ROLE erp_owners;
GRANT CREATE ON DATABASE erp TO cellar_cdc;
ALTER TABLE public.stock_positions OWNER TO erp_owners;
ALTER TABLE public.debezium_signal OWNER TO erp_owners;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO cellar_cdc;
SQL
