-- Which deployments write this Cellar database: `embedded`, or `kafka:<topic prefix>` for the workers of
-- one Kafka-runtime deployment. Each writer records itself every few seconds; a writer of another
-- deployment seen recently makes a new one refuse to start (two deployments writing one database would
-- count every supplier twice, or overwrite each other's contributions).
CREATE TABLE cellar.deployments (
  id          text        PRIMARY KEY,
  host        text        NOT NULL,
  pid         integer     NOT NULL,
  role        text        NOT NULL,
  started_at  timestamptz NOT NULL DEFAULT now(),
  last_seen   timestamptz NOT NULL DEFAULT now()
);
