// Cellar dashboard: plain JS modules, no build step. Health first (the pipeline's state in one line, each
// supplier, throughput and freshness), then stock by region, dead letters, drift and the live changes.
// Modules: api.js (key, calls), stream.js (live changes), stock.js (regions, paged stock), feed.js (live
// changes list), health.js (state, suppliers, drift, pipeline details), charts.js, dead-letters.js,
// format.js (formatting, ages, the once-per-frame painter).

import { api, session, setKey } from './api.js';
import { chartSample } from './charts.js';
import { initDeadLetters, refreshDeadLetters, resetDeadLetters } from './dead-letters.js';
import { feedEvents, startFeedClock, streamRate, FEED_MAX } from './feed.js';
import { $, startAgeTicker } from './format.js';
import { initSuppliers, refreshDetails, showDrift, showPipelineDetails, showState, showSuppliers, showUnreachable } from './health.js';
import { initStockControls, loadPage, loadRegions, stockEvents } from './stock.js';
import { followStream } from './stream.js';

const HEALTH_EVERY_MS = 2000;
const REGIONS_EVERY_MS = 5000;

let stream = null;
let streamState = 'off';
let started = false;
let healthBusy = false;

function setStatus(s, text) {
  streamState = s;
  const st = $('#status');
  st.dataset.state = s;
  st.textContent = text;
}

function showLogin(message) {
  stream?.stop();
  stream = null;
  $('#app').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message || '';
  setStatus('off', 'not connected');
}

/** A key given as `#key=…` (a fragment never reaches the server) is kept for this tab and removed from the address bar. */
function keyFromFragment() {
  const fragment = new URLSearchParams(location.hash.slice(1)).get('key');
  if (!fragment) return false;
  setKey(fragment);
  history.replaceState(null, '', location.pathname + location.search);
  return true;
}

/** Reads pipeline and supplier health and shows it (`force`: list dead letters again even if their counts did not change). */
async function refreshHealth(force = false) {
  if (healthBusy && !force) return;
  healthBusy = true;
  try {
    const [pipeline, { suppliers }] = await Promise.all([api('/v1/pipeline'), api('/v1/suppliers')]);
    showState(pipeline, suppliers, streamState);
    showSuppliers(suppliers);
    refreshDetails();
    showDrift(suppliers);
    showPipelineDetails(pipeline);
    chartSample(pipeline, streamRate());
    await refreshDeadLetters(pipeline, suppliers, force).catch((err) => ($('#dlq-result').textContent = `dead letters could not be read: ${err.message}`));
  } catch (err) {
    if (err.auth) return showLogin(err.message);
    showUnreachable(err);
  } finally {
    healthBusy = false;
  }
}

function follow() {
  stream?.stop();
  stream = followStream({
    backlog: FEED_MAX,
    onEvents: (events) => {
      stockEvents(events);
      feedEvents(events);
    },
    onReset: () => void Promise.all([loadRegions(), loadPage()]).catch(() => undefined),
    onState: (s) => (s === 'refused' ? showLogin('The key was refused for live updates.') : setStatus(s, s === 'live' ? 'live' : 'reconnecting…')),
  });
}

async function start() {
  try {
    await loadRegions();
  } catch (err) {
    return showLogin(err.auth ? err.message : `Could not reach the API: ${err.message}`);
  }
  $('#login').hidden = true;
  $('#app').hidden = false;
  resetDeadLetters();
  follow();
  void refreshHealth(true);
  if (started) return;
  started = true;
  setInterval(() => void refreshHealth(), HEALTH_EVERY_MS);
  setInterval(() => void loadRegions().catch(() => undefined), REGIONS_EVERY_MS);
  startAgeTicker();
  startFeedClock();
}

keyFromFragment();
window.addEventListener('hashchange', () => {
  if (keyFromFragment()) void start();
});
$('#login').addEventListener('submit', (e) => {
  e.preventDefault();
  setKey($('#key').value.trim());
  void start();
});
$('#sign-out').addEventListener('click', () => {
  setKey('');
  showLogin('Signed out: the key was removed from this tab.');
});
initStockControls();
initSuppliers();
initDeadLetters((force) => refreshHealth(force));

if (session.key) void start();
else showLogin();
