-- Single writer: a process that writes on behalf of suppliers (the embedded runtime, a capture) holds a
-- lease. Liveness is a session advisory lock held by the holder's own connection (released the moment the
-- process dies); `epoch` grows with every new holder and is checked inside each commit, so an old holder
-- that was frozen and wakes up after a takeover cannot commit anything.
CREATE TABLE cellar.runtime_leases (
  name         text        PRIMARY KEY,
  holder       text        NOT NULL,
  epoch        bigint      NOT NULL,
  host         text        NOT NULL,
  pid          integer     NOT NULL,
  -- The holder's lock connection (pg_stat_activity.pid), for a takeover to end it.
  backend_pid  integer,
  -- The application_name of every session of the holder, for a takeover to end them all (a frozen holder
  -- may be inside a commit, holding this row).
  session_tag  text,
  acquired_at  timestamptz NOT NULL DEFAULT now(),
  renewed_at   timestamptz NOT NULL DEFAULT now()
);
