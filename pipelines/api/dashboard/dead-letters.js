// Dead letters with supplier, reason and message. An operator key lists them from /v1/ops/dead-letters
// (read again only when the counts in /v1/pipeline change: every /v1/ops call is written to the audit
// trail); an admin key can replay them. A reader key gets the newest pending letters of each supplier from
// /v1/suppliers, and a hint on how to get a key that sees more.

import { api, session } from './api.js';
import { $, el, fillRows, timeEl } from './format.js';

const KEY_HINT = (role) => `npx cellar keys create --name <you> --role ${role}`;

const dlq = {
  /** 'operator' (lists from /v1/ops) or 'reader' (from /v1/suppliers), or null before the first try. */
  mode: null,
  /** The counts last listed for (what makes a new listing worth an audited call). */
  listedFor: null,
  busy: false,
  /** Letters shown in operator mode. */
  letters: [],
};

/** What the role badge says. */
function showRole() {
  const badge = $('#role');
  const text = { reader: 'reader key', operator: 'operator key', 'operator+': 'operator or admin key', admin: 'admin key' }[session.role] || '';
  badge.textContent = text;
  badge.hidden = !text;
}

function hint(text, command) {
  const p = $('#dlq-hint');
  p.replaceChildren(document.createTextNode(text));
  if (command) p.append(el('code', command));
  p.hidden = false;
}

/**
 * Refreshes the dead letters after a health read: `pipeline` (for its counts) and `suppliers` (the reader
 * view). `force` lists again even if the counts did not change (the Refresh button, after a replay).
 */
export async function refreshDeadLetters(pipeline, suppliers, force = false) {
  const counts = JSON.stringify(pipeline.deadLetters) + ($('#dlq-all').checked ? '|all' : '|pending');
  if (dlq.mode === 'reader') return showReaderView(suppliers);
  if (dlq.busy || (!force && dlq.mode === 'operator' && counts === dlq.listedFor)) return;
  dlq.busy = true;
  try {
    const q = new URLSearchParams({ limit: '50' });
    if (!$('#dlq-all').checked) q.set('pending', 'true');
    const { letters } = await api(`/v1/ops/dead-letters?${q}`);
    dlq.mode = 'operator';
    dlq.listedFor = counts;
    if (session.role === null || session.role === 'reader') session.role = 'operator+';
    showRole();
    dlq.letters = letters;
    showOperatorView();
  } catch (err) {
    if (!err.forbidden) throw err;
    dlq.mode = 'reader';
    session.role = 'reader';
    showRole();
    showReaderView(suppliers);
  } finally {
    dlq.busy = false;
  }
}

function showReaderView(suppliers) {
  hint('Listing every dead letter needs an operator key, replaying them an admin key. Here: the newest pending letters of each supplier. Get one with ', KEY_HINT('operator'));
  $('#dlq-actions').hidden = true;
  $('#dlq-stage-col').hidden = true;
  $('#dlq-action-col').hidden = true;
  const rows = suppliers.flatMap((s) => s.deadLetters.newest.map((l) => ({ ...l, supplierId: s.supplierId, status: 'pending' })));
  rows.sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
  fillRows($('#dlq tbody'), rows, (l) => [[timeEl(l.createdAt)], [l.supplierId, 'supplier'], [l.reason, 'reason'], [l.message, 'message'], [l.status]], 'no pending dead letters');
}

function showOperatorView() {
  const canReplay = session.role !== 'operator';
  $('#dlq-hint').hidden = canReplay;
  if (!canReplay) hint('Replaying needs an admin key: ', KEY_HINT('admin'));
  $('#dlq-actions').hidden = false;
  $('#dlq-replay-all').hidden = !canReplay;
  $('#dlq-stage-col').hidden = false;
  $('#dlq-action-col').hidden = !canReplay;
  fillRows($('#dlq tbody'), dlq.letters, (l) => {
    const cells = [[timeEl(l.createdAt)], [l.supplierId ?? '–', 'supplier'], [l.stage], [l.reason, 'reason'], [l.message, 'message'], [l.status]];
    if (canReplay) {
      const b = el('button', 'Replay', 'small-button');
      b.dataset.id = String(l.id);
      b.title = `Replay dead letter ${l.id} (admin)`;
      cells.push([b]);
    }
    return cells;
  }, $('#dlq-all').checked ? 'no dead letters' : 'no pending dead letters');
  for (const tr of $('#dlq tbody').children) tr.dataset.id = tr.querySelector('button')?.dataset.id ?? '';
}

/** Replays letters (`filter`: {ids} or {pending: true}) and says what happened. */
async function replay(filter, again) {
  const out = $('#dlq-result');
  out.textContent = 'replaying…';
  try {
    const r = await api('/v1/ops/dead-letters/replay', { method: 'POST', body: filter });
    session.role = 'admin';
    showRole();
    const queued = r.queued?.length ?? 0;
    out.textContent = `replayed ${r.replayed.length} to their topics, queued ${queued} for the embedded runtime, skipped ${r.skipped.length}` +
      (r.skipped.length ? ' (these cannot be replayed: cellar reconcile --repair corrects them)' : '');
  } catch (err) {
    if (err.forbidden) {
      session.role = 'operator';
      showRole();
      showOperatorView();
      out.textContent = err.message;
    } else out.textContent = `replay failed: ${err.message}`;
  }
  await again(true);
}

/** Wires the Replay buttons, Refresh and the "all statuses" switch; `again()` reads the health and letters again. */
export function initDeadLetters(again) {
  $('#dlq tbody').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-id]');
    if (b) void replay({ ids: [Number(b.dataset.id)] }, again);
  });
  let armed = null;
  $('#dlq-replay-all').addEventListener('click', (e) => {
    const b = e.currentTarget;
    if (!armed) {
      b.textContent = 'Click again to replay every pending letter';
      armed = setTimeout(() => {
        armed = null;
        b.textContent = 'Replay all pending';
      }, 4000);
      return;
    }
    clearTimeout(armed);
    armed = null;
    b.textContent = 'Replay all pending';
    void replay({ pending: true }, again);
  });
  $('#dlq-refresh').addEventListener('click', () => void again(true));
  $('#dlq-all').addEventListener('change', () => void again(true));
}

/** Forgets what was learnt about the key (a new key was given). */
export function resetDeadLetters() {
  dlq.mode = null;
  dlq.listedFor = null;
  showRole();
}
