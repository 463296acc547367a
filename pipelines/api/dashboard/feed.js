// "Live changes": the newest changes of the stream, newest first. Changes are kept in a bounded buffer as
// they arrive; the list is painted at most five times a second (a list that scrolls thousands of lines a
// second cannot be read anyway) and never holds more than FEED_MAX lines.

import { $, el, fmt, onFrame, setText, setTime, timeEl } from './format.js';

/** Lines the list keeps. */
export const FEED_MAX = 60;
const PAINT_EVERY_MS = 200;

const buffer = [];
let unpainted = 0;
let lastPaint = 0;
let timer = null;
/** Changes received per whole second (for the stream rate). */
const perSecond = new Map();
let newestTs = null;

/** Adds a batch of stream events (cheap: no DOM work). */
export function feedEvents(events) {
  const sec = Math.floor(Date.now() / 1000);
  let n = 0;
  for (const ev of events) {
    for (const c of ev.changes) buffer.push({ region: ev.region, sku: c.sku, bottles: c.bottles, version: c.version, ts: ev.updatedTsMs });
    n += ev.changes.length;
    if (newestTs === null || ev.updatedTsMs > newestTs) newestTs = ev.updatedTsMs;
  }
  if (buffer.length > FEED_MAX * 4) buffer.splice(0, buffer.length - FEED_MAX);
  unpainted += n;
  perSecond.set(sec, (perSecond.get(sec) || 0) + n);
  if (perSecond.size > 20) perSecond.delete(perSecond.keys().next().value);
  schedule();
}

/** Changes per second received over the last `seconds` whole seconds. */
export function streamRate(seconds = 2) {
  const now = Math.floor(Date.now() / 1000);
  let n = 0;
  for (let s = now - seconds; s < now; s++) n += perSecond.get(s) || 0;
  return n / seconds;
}

function schedule() {
  if (timer !== null) return;
  timer = setTimeout(() => {
    timer = null;
    onFrame(paint);
  }, Math.max(0, lastPaint + PAINT_EVERY_MS - Date.now()));
}

function paint() {
  lastPaint = Date.now();
  const list = $('#feed');
  const fresh = buffer.slice(-Math.min(unpainted, FEED_MAX));
  unpainted = 0;
  if (fresh.length) {
    const frag = document.createDocumentFragment();
    for (let i = fresh.length - 1; i >= 0; i--) {
      const c = fresh[i];
      const li = el('li');
      li.dataset.key = `${c.region}|${c.sku}`;
      li.append(timeEl(c.ts), document.createTextNode(` ${c.region} · ${c.sku} → ${fmt(c.bottles)} (v${c.version})`));
      frag.append(li);
    }
    list.prepend(frag);
    for (let extra = list.childElementCount - FEED_MAX; extra > 0; extra--) list.lastElementChild.remove();
  }
  setText($('#feed-rate'), `${fmt(Math.round(streamRate()))} changes/s`);
  if (newestTs !== null) setTime($('#feed-newest'), newestTs);
}

/** Keeps the rate line current while nothing arrives. */
export function startFeedClock() {
  setInterval(() => onFrame(paint), 1000);
}
