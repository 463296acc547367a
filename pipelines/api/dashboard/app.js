// Cellar dashboard: plain JS, no build step. Reads the read API with the key in the Authorization
// header (never in URLs) and follows /v1/events as a fetch stream, so the same header works for the
// live updates too (EventSource cannot send headers). Data is only ever written with textContent.

const $ = (sel) => document.querySelector(sel);
const fmt = (n) => (n === null || n === undefined ? '–' : Number(n).toLocaleString('en-US'));
const ms = (v) => (v === null || v === undefined ? '–' : v < 1000 ? `${v} ms` : `${(v / 1000).toFixed(1)} s`);
const time = (ts) => (ts ? new Date(ts).toLocaleTimeString() : '–');
const size = (ml) => (ml === null || ml === undefined ? '–' : `${fmt(ml)} ml`);

let key = sessionStorage.getItem('cellar-key') || '';
let started = false;

/** A key given as `#key=…` (a fragment never reaches the server) is kept for this tab and removed from the address bar. */
function keyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1)).get('key');
  if (!fragment) return false;
  key = fragment;
  sessionStorage.setItem('cellar-key', key);
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}
keyFromFragment();
window.addEventListener('hashchange', () => {
  if (keyFromFragment()) void start();
});

// latest: the newest change seen live per region|sku, so a page read from a store that lags the stream
// (or read while a change arrived) never shows an older value than one already seen.
const state = { region: '', prefix: '', rows: new Map(), latest: new Map(), lastEventId: null, stream: null };

async function api(path) {
  const res = await fetch(path, { headers: { authorization: `Bearer ${key}` } });
  if (res.status === 401 || res.status === 403) {
    const body = await res.json().catch(() => ({}));
    throw Object.assign(new Error(body.error?.message || `HTTP ${res.status}`), { auth: true });
  }
  if (!res.ok) throw new Error(`HTTP ${res.status} for ${path}`);
  return res.json();
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

function setStatus(s, text) {
  const st = $('#status');
  st.dataset.state = s;
  st.textContent = text;
}

function showLogin(message) {
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  setStatus('off', 'not connected');
}

// ---- regions and stock table ----

async function loadRegions() {
  const { regions } = await api('/v1/regions');
  const cards = $('#regions');
  cards.replaceChildren(
    ...regions.map((r) => {
      const c = el('div', undefined, 'card');
      c.dataset.region = r.region;
      c.append(el('div', r.region, 'name'), el('div', fmt(r.bottles), 'big'), el('div', `${fmt(r.skus)} SKUs · ${time(r.updatedTsMs)}`, 'muted small'));
      return c;
    }),
  );
  const sel = $('#region');
  const names = regions.map((r) => r.region);
  if (names.join() !== [...sel.options].map((o) => o.value).join()) {
    sel.replaceChildren(...names.map((n) => Object.assign(el('option', n), { value: n })));
    if (!names.includes(state.region)) state.region = names[0] || '';
    sel.value = state.region;
    if (state.region) await loadStock();
  }
}

function rowFor(sku) {
  let tr = state.rows.get(sku);
  if (!tr) {
    tr = el('tr');
    tr.dataset.sku = sku;
    tr.append(el('td', sku), el('td', '', 'num size'), el('td', '', 'num bottles'), el('td', '', 'num version'), el('td', '', 'updated'));
    state.rows.set(sku, tr);
  }
  return tr;
}

function fill(tr, item, flash) {
  const v = Number(tr.dataset.version || -1);
  if (item.version < v) return; // an older version never overwrites a newer one
  tr.dataset.version = String(item.version);
  tr.querySelector('.size').textContent = size(item.bottleSizeMl);
  const bottles = tr.querySelector('.bottles');
  if (item.heldContributors !== undefined) tr.dataset.held = String(item.heldContributors);
  const held = Number(tr.dataset.held || 0);
  bottles.textContent = held ? `${fmt(item.bottles)} (${held} held)` : fmt(item.bottles);
  bottles.title = held ? `${held} contributor(s) counted at their last valid state: a newer change of their row was dead-lettered (Held contributors, below)` : '';
  bottles.classList.toggle('held', held > 0);
  tr.querySelector('.version').textContent = String(item.version);
  tr.querySelector('.updated').textContent = time(item.updatedTsMs);
  if (flash) {
    tr.classList.remove('flash');
    void tr.offsetWidth;
    tr.classList.add('flash');
  }
}

let stockRequest = 0;
async function loadStock() {
  const region = state.region;
  if (!region) return;
  const mine = ++stockRequest; // only the newest request's answer is shown
  const q = new URLSearchParams({ limit: '200' });
  if (state.prefix) q.set('prefix', state.prefix);
  const page = await api(`/v1/stock/${encodeURIComponent(region)}?${q}`);
  if (mine !== stockRequest) return;
  state.rows = new Map();
  const body = $('#stock tbody');
  body.replaceChildren(...page.items.map((i) => {
    const tr = rowFor(i.sku);
    fill(tr, i, false);
    const seen = state.latest.get(`${region}|${i.sku}`);
    if (seen) fill(tr, seen, false);
    return tr;
  }));
  $('#page-info').textContent = `${page.items.length}${page.next ? '+' : ''} SKUs · from ${page.freshness.store}`;
}

// ---- live changes ----

function applyEvent(ev) {
  const feed = $('#feed');
  for (const c of ev.changes) {
    const k = `${ev.region}|${c.sku}`;
    if ((state.latest.get(k)?.version ?? -1) < c.version) state.latest.set(k, { ...c, updatedTsMs: ev.updatedTsMs });
    if (state.latest.size > 100000) state.latest.delete(state.latest.keys().next().value);
    const li = el('li');
    li.dataset.key = `${ev.region}|${c.sku}`;
    li.append(el('span', time(ev.updatedTsMs), 'when'), document.createTextNode(`${ev.region} · ${c.sku} → ${fmt(c.bottles)} (v${c.version})`));
    feed.prepend(li);
    if (ev.region === state.region && (!state.prefix || c.sku.startsWith(state.prefix))) {
      const known = state.rows.has(c.sku);
      const tr = rowFor(c.sku);
      fill(tr, { ...c, updatedTsMs: ev.updatedTsMs }, true);
      if (!known) insertSorted($('#stock tbody'), tr);
    }
  }
  while (feed.children.length > 50) feed.lastElementChild.remove();
}

function insertSorted(body, tr) {
  const sku = tr.dataset.sku;
  const next = [...body.children].find((r) => r.dataset.sku > sku);
  body.insertBefore(tr, next || null);
}

async function follow() {
  for (let attempt = 0; ; attempt++) {
    const ac = new AbortController();
    state.stream = ac;
    try {
      const headers = { authorization: `Bearer ${key}`, accept: 'text/event-stream' };
      if (state.lastEventId) headers['last-event-id'] = state.lastEventId;
      const res = await fetch('/v1/events', { headers, signal: ac.signal });
      if (res.status === 401 || res.status === 403) return showLogin('The key was refused for live updates.');
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      setStatus('live', 'live');
      attempt = 0;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          let event = 'message';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('id: ')) state.lastEventId = line.slice(4);
            else if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data += line.slice(6);
          }
          if (event === 'stock' && data) applyEvent(JSON.parse(data));
          else if (event === 'reset') await Promise.all([loadRegions(), loadStock()]);
        }
      }
    } catch (err) {
      if (ac.signal.aborted) return;
    }
    setStatus('reconnecting', 'reconnecting…');
    await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
  }
}

// ---- pipeline health ----

function rows(tbody, list, cells, empty) {
  if (list.length === 0) {
    const td = el('td', empty, 'muted');
    td.colSpan = $(tbody).closest('table').querySelectorAll('th').length;
    return $(tbody).replaceChildren(Object.assign(el('tr'), {}).appendChild(td).parentNode);
  }
  $(tbody).replaceChildren(...list.map((x) => {
    const tr = el('tr');
    for (const [v, cls] of cells(x)) tr.append(el('td', v, cls));
    return tr;
  }));
}

const ago = (t) => {
  if (!t) return 'never';
  const s = Math.max(0, Math.round((Date.now() - new Date(t).getTime()) / 1000));
  return s < 90 ? `${s} s ago` : s < 5400 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
};

async function loadSuppliers() {
  const { suppliers } = await api('/v1/suppliers');
  if (!suppliers.length) return rows('#suppliers tbody', [], () => [], 'no supplier has reported yet');
  $('#suppliers tbody').replaceChildren(...suppliers.map((x) => {
    const tr = el('tr');
    tr.dataset.supplier = x.supplierId;
    const status = el('td', x.status, `status ${x.status === 'ok' ? 'up' : x.status === 'failing' || x.status === 'unknown' ? 'down' : ''}`);
    status.title = x.detail ?? '';
    const newest = x.deadLetters.newest[0];
    tr.append(el('td', x.supplierId), status, el('td', ago(x.capture?.lastChangeAt)), el('td', fmt(x.deadLetters.pending), 'num'),
      el('td', newest ? `${newest.reason}: ${newest.message.slice(0, 90)}` : '', 'muted small'));
    return tr;
  }));
}

async function loadHealth() {
  void loadSuppliers().catch(() => undefined);
  const h = await api('/v1/pipeline');
  $('#fresh-p50').textContent = ms(h.freshness.p50Ms);
  $('#fresh-p99').textContent = ms(h.freshness.p99Ms);
  $('#dlq-total').textContent = fmt(h.deadLetters.reduce((s, d) => s + d.count, 0));
  const stores = $('#stores');
  stores.textContent = `redis ${h.stores.redis ? 'up' : 'down'} · pg ${h.stores.postgres ? 'up' : 'down'}`;
  stores.className = `value ${h.stores.redis && h.stores.postgres ? 'up' : 'down'}`;
  rows('#stages tbody', h.stages, (s) => [[s.stage], [fmt(s.inPerS), 'num'], [fmt(s.outPerS), 'num'], [fmt(s.inTotal), 'num']], 'no records processed yet');
  rows('#lag tbody', h.consumerLag, (l) => [[l.group], [l.topic], [fmt(l.lag), 'num']], 'no Kafka consumers reported (embedded runtime, or no worker URLs to read)');
  rows('#held tbody', h.held, (x) => [[x.supplierId], [x.reason], [fmt(x.count), 'num'], [new Date(x.oldestMs).toLocaleString()]], 'none: every counted row is at its latest change');
  rows('#dlq tbody', h.deadLetters, (d) => [[d.stage], [d.reason], [fmt(d.count), 'num'], [fmt(d.pending), 'num']], 'none');
  const r = h.reconciliation;
  $('#reconciliation').textContent = r
    ? `${r.outcome ?? 'running'} · ${r.supplier_id ?? 'all suppliers'} · started ${new Date(r.started_at).toLocaleString()} · ${fmt(r.rows_compared)} rows compared · ${fmt(r.drifted_keys)} drifted keys${r.repaired ? `, ${fmt(r.repaired)} repaired` : ''}${r.unsettled ? `, ${fmt(r.unsettled)} still changing` : ''}`
    : 'none yet';
  $('#sources').textContent = `metrics from: ${h.sources.map((s) => `${s.source}${s.ok ? '' : ' (unreachable)'}`).join(', ')}`;
}

// ---- start ----

async function start() {
  try {
    await loadRegions();
  } catch (err) {
    return showLogin(err.auth ? err.message : `Could not reach the API: ${err.message}`);
  }
  $('#login').hidden = true;
  $('#app').hidden = false;
  if (started) {
    state.stream?.abort();
    state.lastEventId = null;
    void follow();
    return;
  }
  started = true;
  void follow();
  void loadHealth().catch(() => undefined);
  setInterval(() => void loadHealth().catch(() => undefined), 2000);
  setInterval(() => void loadRegions().catch(() => undefined), 5000);
}

$('#region').addEventListener('change', (e) => {
  state.region = e.target.value;
  void loadStock();
});
let typing;
$('#prefix').addEventListener('input', (e) => {
  clearTimeout(typing);
  typing = setTimeout(() => {
    state.prefix = e.target.value.trim();
    void loadStock();
  }, 150);
});
$('#login').addEventListener('submit', (e) => {
  e.preventDefault();
  key = $('#key').value.trim();
  sessionStorage.setItem('cellar-key', key);
  void start();
});

if (key) void start();
else showLogin();
