-- Read API access: keys with roles, and the audit trail of operator and admin actions.

-- One row per API key. The key itself (`ck_<id>_<secret>`) is shown once when created; only the SHA-256
-- of its 256-bit random secret is kept. `id` is public (it names the key in lists, logs and the audit).
CREATE TABLE cellar.api_keys (
  id                text        PRIMARY KEY,
  name              text        NOT NULL,
  role              text        NOT NULL CHECK (role IN ('reader', 'operator', 'admin')),
  secret_sha256     bytea       NOT NULL,
  -- Requests per second this key may make (token bucket, burst of twice the rate); 0 = unlimited.
  rate_limit_per_s  integer     NOT NULL DEFAULT 100 CHECK (rate_limit_per_s >= 0),
  created_at        timestamptz NOT NULL DEFAULT now(),
  revoked_at        timestamptz,
  last_used_at      timestamptz
);
CREATE UNIQUE INDEX api_keys_live_name ON cellar.api_keys (name) WHERE revoked_at IS NULL;

-- Every operator/admin action through the API or the keys CLI, allowed or not: who, what, when, outcome.
-- `params` never holds secrets.
CREATE TABLE cellar.api_audit (
  id        bigserial   PRIMARY KEY,
  ts        timestamptz NOT NULL DEFAULT now(),
  key_id    text,
  key_name  text,
  actor     text        NOT NULL,
  action    text        NOT NULL,
  target    text,
  params    jsonb       NOT NULL DEFAULT '{}',
  outcome   text        NOT NULL CHECK (outcome IN ('ok', 'denied', 'failed')),
  status    integer,
  detail    text
);
CREATE INDEX api_audit_ts ON cellar.api_audit (ts);
CREATE INDEX api_audit_key ON cellar.api_audit (key_id, ts);
