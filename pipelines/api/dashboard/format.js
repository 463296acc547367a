// Formatting and small DOM helpers shared by the dashboard's modules. Text only ever goes into the page
// with textContent (never innerHTML), so supplier data and messages cannot inject markup.

const nf = new Intl.NumberFormat('en-US');

/** `q` for document.querySelector. */
export const $ = (sel, root = document) => root.querySelector(sel);

/** A whole number with thousands separators; `–` when unknown. */
export const fmt = (n) => (n === null || n === undefined || Number.isNaN(Number(n)) ? '–' : nf.format(Number(n)));

/** A duration in ms as `950 ms`, `1.2 s`, `3.4 min`. */
export const ms = (v) => (v === null || v === undefined ? '–' : v < 1000 ? `${Math.round(v)} ms` : v < 60_000 ? `${(v / 1000).toFixed(1)} s` : `${(v / 60_000).toFixed(1)} min`);

/** A byte count as `512 B`, `1.5 KiB`, `12.0 MiB`, `1.25 GiB`. */
export function bytes(b) {
  if (b === null || b === undefined) return '–';
  if (b < 1024) return `${b} B`;
  if (b < 1024 ** 2) return `${(b / 1024).toFixed(1)} KiB`;
  if (b < 1024 ** 3) return `${(b / 1024 ** 2).toFixed(1)} MiB`;
  return `${(b / 1024 ** 3).toFixed(2)} GiB`;
}

/** A bottle size in ml. */
export const size = (ml) => (ml === null || ml === undefined ? '–' : `${fmt(ml)} ml`);

/** A time (ms since the epoch, or an ISO string) as ms; NaN when absent. */
export const toMs = (t) => (t === null || t === undefined || t === '' ? NaN : typeof t === 'number' ? t : Date.parse(t));

/** How long ago `t` was: `4 s ago`, `3 min ago`, `2 h ago`, `5 d ago`; `never` without a time. */
export function age(t, now = Date.now()) {
  const at = toMs(t);
  if (!Number.isFinite(at)) return 'never';
  const s = Math.max(0, Math.round((now - at) / 1000)); // a clock slightly ahead of this one reads as 0 s
  if (s < 90) return `${s} s ago`;
  if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
  if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86_400)} d ago`;
}

/** Creates an element with optional text and class. */
export function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

/** Writes `text` only when it differs (an unchanged write still invalidates style and layout). */
export function setText(node, text) {
  const t = String(text);
  if (node.textContent !== t) node.textContent = t;
}

/**
 * A `<time>` showing an age (`12 s ago`) with the ISO time as its title; {@link startAgeTicker} keeps the
 * age current. `prefix` is written before the age (e.g. `reported `).
 */
export function timeEl(t, prefix = '') {
  const e = document.createElement('time');
  e.dataset.prefix = prefix;
  setTime(e, t);
  return e;
}

/** Points a {@link timeEl} at another time. */
export function setTime(e, t) {
  const at = toMs(t);
  const key = Number.isFinite(at) ? String(at) : '';
  if (e.dataset.ts === key && e.textContent !== '') return;
  e.dataset.ts = key;
  if (Number.isFinite(at)) {
    const iso = new Date(at).toISOString();
    e.dateTime = iso;
    e.title = iso;
  } else {
    e.removeAttribute('datetime');
    e.title = '';
  }
  setText(e, `${e.dataset.prefix || ''}${age(at)}`);
}

/** Refreshes every age on the page once a second (a text write only where the age changed). */
export function startAgeTicker() {
  setInterval(() => {
    const now = Date.now();
    for (const e of document.querySelectorAll('time[data-ts]')) {
      const at = e.dataset.ts === '' ? NaN : Number(e.dataset.ts);
      setText(e, `${e.dataset.prefix || ''}${age(at, now)}`);
    }
  }, 1000);
}

/** Fills a table body with one row per item, or one muted row saying `empty`. `cells(x)` gives [text | Node, class?] pairs. */
export function fillRows(tbody, list, cells, empty) {
  if (list.length === 0) {
    const td = el('td', empty, 'muted');
    td.colSpan = tbody.closest('table').querySelectorAll('thead th').length;
    const tr = el('tr');
    tr.append(td);
    return tbody.replaceChildren(tr);
  }
  tbody.replaceChildren(
    ...list.map((x) => {
      const tr = el('tr');
      for (const [v, cls] of cells(x)) {
        const td = el('td', undefined, cls);
        if (v instanceof Node) td.append(v);
        else td.textContent = v ?? '';
        tr.append(td);
      }
      return tr;
    }),
  );
}

const tasks = new Set();
let scheduled = false;

/**
 * Runs `fn` in the next animation frame, once however often it is asked for before then: everything the
 * stream changed is painted together, at most once per frame, and nothing while the tab is hidden.
 */
export function onFrame(fn) {
  tasks.add(fn);
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(() => {
    scheduled = false;
    const list = [...tasks];
    tasks.clear();
    for (const f of list) f();
  });
}
