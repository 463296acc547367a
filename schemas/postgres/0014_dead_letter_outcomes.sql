-- What became of a dead letter: `pending` until replayed; `replayed` once sent back through the pipeline
-- (by whom, when); `resolved` once its change was applied without being refused again, or an operator
-- closed it (`cellar dlq resolve`, with a note). A letter refused again on replay names the letter it
-- replays (`replay_of`), so a replay can say why it was refused again.
ALTER TABLE cellar.dead_letters
  ADD COLUMN status      text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'replayed', 'resolved')),
  ADD COLUMN replayed_by text,
  ADD COLUMN resolved_at timestamptz,
  ADD COLUMN resolved_by text,
  ADD COLUMN resolution  text,
  ADD COLUMN replay_of   bigint;
UPDATE cellar.dead_letters SET status = 'replayed' WHERE replayed_at IS NOT NULL;
CREATE INDEX dead_letters_replay_of ON cellar.dead_letters (replay_of) WHERE replay_of IS NOT NULL;
CREATE INDEX dead_letters_status ON cellar.dead_letters (status, supplier_id);
-- A dead letter handed back to the embedded runtime: its change, and which letter it replays.
ALTER TABLE cellar.repair_requests ADD COLUMN replay_of bigint;
