// Regions and a region's stock: one page at a time in SKU order (keyset paging with the API's `after` and
// `limit`, search by SKU prefix), kept current from the change stream. Changes are folded into plain maps as
// they arrive; once per animation frame only the rows that changed are written, with no layout reads.

import { api } from './api.js';
import { $, el, fmt, onFrame, setText, setTime, size, timeEl } from './format.js';

/** Keys whose newest stream value is remembered (so a page read from a lagging store never shows older values). */
const LATEST_MAX = 200_000;
/** How long a changed row stays marked, ms. */
const HIGHLIGHT_MS = 1000;

const state = {
  region: '',
  prefix: '',
  limit: 100,
  /** `after` of each page visited from the first; the last one is the current page's. */
  cursors: [undefined],
  /** The current page's `next` (null on the last page). */
  next: null,
  /** sku → {tr, cells…, version} of the current page. */
  rows: new Map(),
  /** The current page's SKUs, sorted (where a new SKU of the page's range is inserted). */
  skus: [],
  /** sku → newest change of the current page not painted yet. */
  dirty: new Map(),
  /** `region|sku` → newest change seen on the stream. */
  latest: new Map(),
  request: 0,
};

const after = () => state.cursors[state.cursors.length - 1];

/** True when `sku` of the shown region belongs to the page shown: prefix, and between its cursors. */
function inPage(sku) {
  if (state.prefix && !sku.startsWith(state.prefix)) return false;
  const a = after();
  if (a !== undefined && sku <= a) return false;
  return state.next === null || sku <= state.next;
}

/** Folds stream events into the stock state (no DOM work); the changed rows are painted in the next frame. */
export function stockEvents(events) {
  let touched = false;
  for (const ev of events) {
    const shown = ev.region === state.region;
    for (const c of ev.changes) {
      const k = `${ev.region}|${c.sku}`;
      const prev = state.latest.get(k);
      if (prev && prev.version >= c.version) continue; // versions only move forward
      const item = { sku: c.sku, bottles: c.bottles, version: c.version, bottleSizeMl: c.bottleSizeMl, updatedTsMs: ev.updatedTsMs };
      if (!prev && state.latest.size >= LATEST_MAX) state.latest.delete(state.latest.keys().next().value);
      state.latest.set(k, item);
      if (shown && inPage(c.sku)) {
        state.dirty.set(c.sku, item);
        touched = true;
      }
    }
  }
  if (touched) onFrame(paintChanges);
}

function newRow(sku) {
  const tr = el('tr');
  tr.dataset.sku = sku;
  const r = { tr, version: -1, changedAt: 0, size: el('td', '', 'num size'), bottles: el('td', '', 'num bottles'), ver: el('td', '', 'num version'), updated: timeEl(null) };
  const upd = el('td', undefined, 'updated');
  upd.append(r.updated);
  tr.append(el('td', sku, 'sku'), r.size, r.bottles, r.ver, upd);
  state.rows.set(sku, r);
  return r;
}

/** Writes `item` into row `r` unless the row shows a newer version; `flash` marks a version the row did not show yet. */
function fill(r, item, flash) {
  if (item.version < r.version) return; // an older version never overwrites a newer one
  const changed = item.version > r.version;
  r.version = item.version;
  setText(r.size, size(item.bottleSizeMl));
  if (item.heldContributors !== undefined) r.held = item.heldContributors;
  const held = r.held || 0;
  setText(r.bottles, held ? `${fmt(item.bottles)} (${held} held)` : fmt(item.bottles));
  if (held) r.bottles.title = `${held} contributor(s) counted at their last valid state: a newer change of their row was dead-lettered`;
  r.bottles.classList.toggle('held', held > 0);
  setText(r.ver, item.version);
  if (item.updatedTsMs) setTime(r.updated, item.updatedTsMs);
  if (flash && changed) highlight(r);
}

/** Rows marked as just changed: a static class, removed by one sweep, not an animation per row. */
const highlighted = new Set();
let sweeping = null;

/**
 * Marks a changed row for about a second. A CSS animation per change would restyle and repaint every
 * animating row on every frame (at 5k changes/s nearly all rows of a page animate at once, which took the
 * page's main thread); a class added now and removed by a sweep costs one restyle each way.
 */
function highlight(r) {
  r.changedAt = performance.now();
  if (!highlighted.has(r)) {
    highlighted.add(r);
    r.tr.classList.add('changed');
  }
  sweeping ??= setInterval(() => onFrame(sweep), HIGHLIGHT_MS / 2);
}

function sweep() {
  const old = performance.now() - HIGHLIGHT_MS;
  for (const r of highlighted) {
    if (r.changedAt > old) continue;
    r.tr.classList.remove('changed');
    highlighted.delete(r);
  }
  if (highlighted.size === 0) {
    clearInterval(sweeping);
    sweeping = null;
  }
}

/** Index of the first SKU of the page greater than `sku` (binary search). */
function insertionPoint(sku) {
  let lo = 0;
  let hi = state.skus.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (state.skus[mid] < sku) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function paintChanges() {
  const body = $('#stock tbody');
  for (const [sku, item] of state.dirty) {
    let r = state.rows.get(sku);
    if (!r) {
      r = newRow(sku);
      const i = insertionPoint(sku);
      body.insertBefore(r.tr, i < state.skus.length ? state.rows.get(state.skus[i]).tr : null);
      state.skus.splice(i, 0, sku);
      if (state.skus.length === 1) body.querySelector('tr.empty')?.remove();
    }
    fill(r, item, true);
  }
  state.dirty.clear();
}

/** Reads the current page (after the current cursor) and shows it. */
export async function loadPage() {
  const region = state.region;
  if (!region) return;
  const mine = ++state.request; // only the newest request's answer is shown
  const q = new URLSearchParams({ limit: String(state.limit) });
  if (state.prefix) q.set('prefix', state.prefix);
  if (after() !== undefined) q.set('after', after());
  const page = await api(`/v1/stock/${encodeURIComponent(region)}?${q}`);
  if (mine !== state.request) return;
  state.rows = new Map();
  state.dirty.clear();
  highlighted.clear();
  state.next = page.next;
  state.skus = page.items.map((i) => i.sku);
  const body = $('#stock tbody');
  if (!page.items.length) {
    const td = el('td', state.prefix ? `no SKU of ${region} starts with “${state.prefix}”` : `no stock in ${region}`, 'muted');
    td.colSpan = 5;
    const tr = el('tr', undefined, 'empty');
    tr.append(td);
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(
      ...page.items.map((i) => {
        const r = newRow(i.sku);
        fill(r, i, false);
        const seen = state.latest.get(`${region}|${i.sku}`);
        if (seen) fill(r, seen, false);
        return r.tr;
      }),
    );
  }
  const n = state.cursors.length;
  const from = (n - 1) * state.limit;
  setText($('#page-info'), page.items.length
    ? `page ${n} · SKUs ${fmt(from + 1)}–${fmt(from + page.items.length)}${page.next ? '' : ' (last page)'} · from ${page.freshness.store}`
    : `page ${n} · none`);
  setTime($('#page-read'), Date.now());
  $('#page-prev').disabled = n <= 1;
  $('#page-first').disabled = n <= 1;
  $('#page-next').disabled = !page.next;
}

/** Reads the regions' summary: cards, and the region choices. */
export async function loadRegions() {
  const { regions } = await api('/v1/regions');
  const cards = $('#regions');
  const byName = new Map([...cards.children].map((c) => [c.dataset.region, c]));
  cards.replaceChildren(
    ...regions.map((r) => {
      let c = byName.get(r.region);
      if (!c) {
        c = el('div', undefined, 'card');
        c.dataset.region = r.region;
        c.append(el('div', r.region, 'name'), el('div', '', 'big'), el('div', '', 'muted small skus'), timeEl(null, 'written '));
      }
      setText(c.querySelector('.big'), `${fmt(r.bottles)} bottles`);
      setText(c.querySelector('.skus'), `${fmt(r.skus)} SKUs`);
      setTime(c.querySelector('time'), r.updatedTsMs);
      return c;
    }),
  );
  const sel = $('#region');
  const names = regions.map((r) => r.region);
  if (names.join() !== [...sel.options].map((o) => o.value).join()) {
    sel.replaceChildren(...names.map((n) => Object.assign(el('option', n), { value: n })));
    if (!names.includes(state.region)) {
      state.region = names[0] || '';
      state.cursors = [undefined];
    }
    sel.value = state.region;
    if (state.region) await loadPage();
  }
}

/** Wires the region choice, search, page size and paging buttons. */
export function initStockControls() {
  const restart = () => {
    state.cursors = [undefined];
    state.next = null;
    void loadPage();
  };
  $('#region').addEventListener('change', (e) => {
    state.region = e.target.value;
    restart();
  });
  let typing;
  $('#prefix').addEventListener('input', (e) => {
    clearTimeout(typing);
    typing = setTimeout(() => {
      state.prefix = e.target.value.trim();
      restart();
    }, 200);
  });
  $('#page-size').addEventListener('change', (e) => {
    state.limit = Number(e.target.value);
    restart();
  });
  $('#page-first').addEventListener('click', restart);
  $('#page-prev').addEventListener('click', () => {
    if (state.cursors.length > 1) state.cursors.pop();
    void loadPage();
  });
  $('#page-next').addEventListener('click', () => {
    if (!state.next) return;
    state.cursors.push(state.next);
    void loadPage();
  });
}
