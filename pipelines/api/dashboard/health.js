// Pipeline health: the state in one line (fresh / lagging / failing), one row per supplier with its
// details on demand, drift per supplier, and the pipeline's stages, lag, held rows and metric sources.

import { api } from './api.js';
import { $, bytes, el, fillRows, fmt, ms, setText, setTime, timeEl } from './format.js';

/** Freshness p99 above this reads as lagging, ms. */
export const LAGGING_FRESHNESS_MS = 5_000;
/** Consumer lag (messages, summed) above this reads as lagging. */
export const LAGGING_CONSUMER_LAG = 10_000;

const STATUS_CLASS = { ok: 'good', snapshotting: 'warn', starting: 'warn', failing: 'bad', stopped: 'muted', unknown: 'warn' };

/** Suppliers whose details are open: id → the detail row. */
const open = new Map();

/**
 * The pipeline's state from `/v1/pipeline`, `/v1/suppliers` and the page's own stream: `failing` when a
 * store is unreachable, a supplier fails or its runtime stopped reporting, or metrics of a worker cannot be
 * read; `lagging` when freshness p99 or consumer lag is high, a supplier snapshots or starts, or the live
 * stream reconnects; else `fresh`. Returns the state and the reasons, worst first.
 */
export function pipelineState(p, suppliers, streamState) {
  const failing = [];
  const lagging = [];
  if (!p.stores.redis) failing.push('Redis unreachable');
  if (!p.stores.postgres) failing.push('Postgres unreachable');
  for (const s of suppliers) {
    if (s.status === 'failing') failing.push(`${s.supplierId} failing${s.detail ? `: ${s.detail}` : ''}`);
    else if (s.capture && !s.capture.reporting) failing.push(`${s.supplierId}: its ${s.capture.runtime} runtime stopped reporting`);
    else if (s.status === 'snapshotting' || s.status === 'starting') lagging.push(`${s.supplierId} ${s.status}`);
  }
  for (const src of p.sources) if (!src.ok) failing.push(`metrics of ${src.source} unreachable`);
  if (p.freshness.p99Ms !== null && p.freshness.p99Ms > LAGGING_FRESHNESS_MS) lagging.push(`freshness p99 ${ms(p.freshness.p99Ms)}`);
  const lag = p.consumerLag.reduce((n, l) => n + l.lag, 0);
  if (lag > LAGGING_CONSUMER_LAG) lagging.push(`consumer lag ${fmt(lag)} messages`);
  if (streamState !== 'live') lagging.push('live updates reconnecting');
  if (failing.length) return { state: 'failing', reasons: [...failing, ...lagging] };
  if (lagging.length) return { state: 'lagging', reasons: lagging };
  return { state: 'fresh', reasons: [] };
}

/** Writes the one-line state. */
export function showState(p, suppliers, streamState) {
  const { state, reasons } = pipelineState(p, suppliers, streamState);
  const line = $('#pipeline-state');
  line.dataset.state = state;
  setText($('#state-word'), state);
  const streaming = suppliers.filter((s) => s.status === 'ok').length;
  const first = p.stages.find((s) => s.stage === 'embedded' || s.stage === 'normalizer') ?? p.stages[0];
  const pending = p.deadLetters.reduce((n, d) => n + d.pending, 0);
  const facts = [
    `${streaming} of ${suppliers.length} ${suppliers.length === 1 ? 'supplier' : 'suppliers'} streaming`,
    `freshness p99 ${ms(p.freshness.p99Ms)} (p50 ${ms(p.freshness.p50Ms)})`,
    `${fmt(first?.inPerS ?? 0)} changes/s in`,
    `${fmt(pending)} ${pending === 1 ? 'dead letter' : 'dead letters'} pending`,
  ];
  setText($('#state-text'), [...reasons, ...facts].join(' · '));
  $('#state-text').title = reasons.join('\n');
  setTime($('#state-checked'), p.at);
}

/** Says the API could not be read. */
export function showUnreachable(err) {
  $('#pipeline-state').dataset.state = 'failing';
  setText($('#state-word'), 'failing');
  setText($('#state-text'), `the API could not be read: ${err.message}`);
}

function reconciliationText(r) {
  if (!r) return 'never';
  const drift = r.driftedKeys ? `drift ${fmt(r.driftedKeys)} keys${r.repaired ? `, ${fmt(r.repaired)} repaired` : ''}` : 'no drift';
  return `${r.outcome} · ${drift} · `;
}

function supplierRow(id) {
  const tr = el('tr', undefined, 'supplier');
  tr.dataset.supplier = id;
  const toggle = el('button', '▸', 'toggle');
  toggle.setAttribute('aria-expanded', 'false');
  toggle.title = `details of ${id}`;
  const name = el('td', undefined, 'name');
  name.append(toggle, document.createTextNode(` ${id}`));
  const c = {
    tr,
    toggle,
    status: el('span', '', 'sup-status'),
    capture: el('td', '', 'capture'),
    last: timeEl(null),
    fresh: timeEl(null, 'report '),
    lag: el('td', '', 'num lag'),
    dlq: el('td', '', 'num dlq'),
    recon: el('span', '', 'recon-text'),
    reconAt: timeEl(null),
  };
  const statusTd = el('td');
  statusTd.append(c.status);
  const lastTd = el('td', undefined, 'last-change');
  lastTd.append(c.last);
  const freshTd = el('td', undefined, 'freshness');
  freshTd.append(c.fresh);
  const reconTd = el('td', undefined, 'recon');
  reconTd.append(c.recon, c.reconAt);
  tr.append(name, statusTd, c.capture, lastTd, freshTd, c.lag, c.dlq, reconTd);
  tr._cells = c;
  return tr;
}

/** One row per supplier (rows are kept and only their changed cells written); open details follow their row. */
export function showSuppliers(suppliers) {
  const body = $('#suppliers tbody');
  if (!suppliers.length) return fillRows(body, [], () => [], 'no supplier has reported yet');
  const rows = new Map([...body.querySelectorAll('tr.supplier')].map((tr) => [tr.dataset.supplier, tr]));
  const order = [];
  for (const s of suppliers) {
    const tr = rows.get(s.supplierId) ?? supplierRow(s.supplierId);
    const c = tr._cells;
    setText(c.status, s.status);
    c.status.className = `sup-status ${STATUS_CLASS[s.status] ?? ''}`;
    c.status.title = s.detail ?? '';
    tr.dataset.status = s.status;
    const cap = s.capture ? `${s.capture.state} (${s.capture.runtime})` : s.connector ? ('state' in s.connector ? `connector ${s.connector.state}` : 'connector ?') : '–';
    setText(c.capture, cap);
    setTime(c.last, s.lastChangeAt ?? s.capture?.lastChangeAt ?? null);
    setTime(c.fresh, s.capture?.updatedAt ?? null);
    c.fresh.classList.toggle('bad', Boolean(s.capture && !s.capture.reporting));
    setText(c.lag, s.capture?.lagBytes === null || s.capture?.lagBytes === undefined ? '–' : bytes(s.capture.lagBytes));
    c.lag.title = s.capture?.lagDetail ?? '';
    setText(c.dlq, fmt(s.deadLetters.pending));
    c.dlq.classList.toggle('bad', s.deadLetters.pending > 0);
    c.dlq.title = s.deadLetters.byReason.map((r) => `${r.reason}: ${r.pending} pending of ${r.total}`).join('\n');
    setText(c.recon, reconciliationText(s.lastReconciliation));
    c.recon.classList.toggle('bad', Boolean(s.lastReconciliation?.driftedKeys && s.lastReconciliation.driftedKeys > s.lastReconciliation.repaired));
    setTime(c.reconAt, s.lastReconciliation?.at ?? null);
    c.reconAt.hidden = !s.lastReconciliation;
    order.push(tr);
    const detail = open.get(s.supplierId);
    if (detail) order.push(detail);
  }
  const current = [...body.children];
  if (current.length !== order.length || current.some((tr, i) => tr !== order[i])) body.replaceChildren(...order);
}

/** Reads `/v1/suppliers/{id}` and writes it into the open detail row. */
async function loadDetail(id) {
  const row = open.get(id);
  if (!row) return;
  const s = await api(`/v1/suppliers/${encodeURIComponent(id)}`);
  const box = el('div', undefined, 'detail-box');
  const line = (label, value) => {
    const p = el('p');
    p.append(el('b', `${label} `));
    if (value instanceof Node) p.append(value);
    else p.append(document.createTextNode(value));
    return p;
  };
  if (s.detail) box.append(line('detail', s.detail));
  if (s.capture) {
    const since = el('span');
    since.append(document.createTextNode(`${s.capture.state} since `), timeEl(s.capture.stateSince), document.createTextNode(` · ${fmt(s.capture.changes)} changes · ${fmt(s.capture.restarts)} restarts${s.capture.lagDetail ? ` · ${s.capture.lagDetail}` : ''}`));
    box.append(line(`capture (${s.capture.runtime})`, since));
  }
  if (s.connector) {
    box.append(line('connector', 'error' in s.connector ? `${s.connector.name}: ${s.connector.error}` : `${s.connector.name} ${s.connector.state}; tasks ${s.connector.tasks.map((t) => `${t.id} ${t.state}${t.trace ? ` (${t.trace})` : ''}`).join(', ') || 'none'}`));
  }
  if (s.held) box.append(line('held rows', fmt(s.held)));
  box.append(line('dead letters', s.deadLetters.byReason.length ? s.deadLetters.byReason.map((r) => `${r.reason} ${fmt(r.pending)} pending of ${fmt(r.total)}`).join(' · ') : 'none'));
  if (s.deadLetters.newest.length) {
    const ul = el('ul', undefined, 'letters');
    for (const l of s.deadLetters.newest) {
      const li = el('li');
      li.append(timeEl(l.createdAt), document.createTextNode(' '), el('b', l.reason), document.createTextNode(' '), el('span', l.message, 'message'));
      ul.append(li);
    }
    box.append(ul);
  }
  const td = row.firstElementChild;
  td.replaceChildren(box);
}

/** Opens or closes a supplier's details. */
function toggle(id) {
  const tr = $(`#suppliers tr.supplier[data-supplier="${CSS.escape(id)}"]`);
  if (!tr) return;
  if (open.has(id)) {
    open.get(id).remove();
    open.delete(id);
    tr._cells.toggle.textContent = '▸';
    tr._cells.toggle.setAttribute('aria-expanded', 'false');
    return;
  }
  const detail = el('tr', undefined, 'detail');
  detail.dataset.detailOf = id;
  const td = el('td', 'loading…', 'muted');
  td.colSpan = 8;
  detail.append(td);
  tr.after(detail);
  open.set(id, detail);
  tr._cells.toggle.textContent = '▾';
  tr._cells.toggle.setAttribute('aria-expanded', 'true');
  void loadDetail(id).catch((err) => td.replaceChildren(document.createTextNode(`could not read ${id}: ${err.message}`)));
}

/** Reads the open details again (after each health refresh). */
export function refreshDetails() {
  for (const id of open.keys()) void loadDetail(id).catch(() => undefined);
}

/** Row clicks open a supplier's details. */
export function initSuppliers() {
  $('#suppliers tbody').addEventListener('click', (e) => {
    const tr = e.target.closest('tr.supplier');
    if (tr) toggle(tr.dataset.supplier);
  });
}

/** Drift per supplier: each supplier's last reconciliation. */
export function showDrift(suppliers) {
  fillRows($('#drift tbody'), suppliers, (s) => {
    const r = s.lastReconciliation;
    return r
      ? [[s.supplierId], [r.outcome, r.outcome === 'clean' || r.outcome === 'repaired' ? 'good' : r.outcome === 'drift' || r.outcome === 'failed' ? 'bad' : ''], [fmt(r.driftedKeys), 'num'], [fmt(r.repaired), 'num'], [timeEl(r.at)]]
      : [[s.supplierId], ['never reconciled', 'muted'], ['–', 'num'], ['–', 'num'], ['']];
  }, 'no supplier yet');
}

/** Stages, consumer lag, dead letters by reason, held rows, stores and metric sources. */
export function showPipelineDetails(h) {
  fillRows($('#stages tbody'), h.stages, (s) => [[s.stage], [fmt(s.inPerS), 'num'], [fmt(s.outPerS), 'num'], [fmt(s.inTotal), 'num']], 'no records processed yet');
  fillRows($('#lag tbody'), h.consumerLag, (l) => [[l.group], [l.topic], [fmt(l.lag), 'num']], 'no Kafka consumers reported (embedded runtime, or no worker URLs to read)');
  fillRows($('#dlq-reasons tbody'), h.deadLetters, (d) => [[d.stage], [d.reason], [fmt(d.count), 'num'], [fmt(d.pending), 'num']], 'none');
  fillRows($('#held tbody'), h.held, (x) => [[x.supplierId], [x.reason], [fmt(x.count), 'num'], [timeEl(x.oldestMs)]], 'none: every counted row is at its latest change');
  const stores = $('#stores');
  setText(stores, `redis ${h.stores.redis ? 'up' : 'down'} · postgres ${h.stores.postgres ? 'up' : 'down'}`);
  stores.className = h.stores.redis && h.stores.postgres ? 'good' : 'bad';
  setText($('#sources'), `metrics from: ${h.sources.map((s) => `${s.source}${s.ok ? '' : ' (unreachable)'}`).join(', ')}`);
}
