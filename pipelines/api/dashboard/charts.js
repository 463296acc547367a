// Throughput and freshness over the last minutes, as plain SVG polylines (no library, no build step).
// The API reports rates and quantiles for "now"; the page keeps a sample every health refresh and draws
// the last WINDOW_MS of them (or since the first sample). Samples are kept in the tab's session storage, so a reload keeps the history.

import { $, el, fmt, ms, setText } from './format.js';

/** How much history a chart shows, ms. */
export const WINDOW_MS = 10 * 60_000;
const MIN_SPAN_MS = 60_000;
const STORE = 'cellar-charts';
const COLORS = ['#7b1e3a', '#2f6db3', '#2f7d4a', '#b45309', '#6b4fa0', '#0f766e', '#9f1239'];
const W = 600;
const H = 120;
const NS = 'http://www.w3.org/2000/svg';

/** A line chart of named series over time in one SVG. */
class Chart {
  constructor(id, { unit, format }) {
    this.root = $(`#${id}`);
    this.svg = this.root.querySelector('svg');
    this.legend = this.root.querySelector('.legend');
    this.top = this.root.querySelector('.ymax');
    this.from = this.root.querySelector('.from');
    this.unit = unit;
    this.format = format;
    this.samples = [];
    this.lines = new Map();
  }

  push(t, values) {
    this.samples.push({ t, v: values });
    while (this.samples.length && this.samples[0].t < t - WINDOW_MS) this.samples.shift();
  }

  draw(now = Date.now()) {
    const names = [...new Set(this.samples.flatMap((s) => Object.keys(s.v)))];
    let max = 0;
    for (const s of this.samples) for (const v of Object.values(s.v)) if (v !== null && v > max) max = v;
    const top = niceCeil(max);
    setText(this.top, `${this.format(top)}${this.unit}`);
    // From the oldest sample kept (at least a minute, at most WINDOW_MS) to now: a page open for a short
    // while still draws readable lines.
    const span = Math.min(WINDOW_MS, Math.max(MIN_SPAN_MS, now - (this.samples[0]?.t ?? now)));
    const x = (t) => ((t - (now - span)) / span) * W;
    const y = (v) => H - (v / top) * (H - 4) - 2;
    for (const [i, name] of names.entries()) {
      let line = this.lines.get(name);
      if (!line) {
        line = document.createElementNS(NS, 'polyline');
        line.setAttribute('fill', 'none');
        line.setAttribute('stroke', COLORS[i % COLORS.length]);
        line.setAttribute('stroke-width', '2');
        line.setAttribute('vector-effect', 'non-scaling-stroke');
        line.dataset.series = name;
        this.svg.append(line);
        this.lines.set(name, line);
      }
      const pts = this.samples.filter((s) => s.v[name] !== null && s.v[name] !== undefined).map((s) => `${x(s.t).toFixed(1)},${y(s.v[name]).toFixed(1)}`);
      line.setAttribute('points', pts.join(' '));
    }
    const mins = Math.round(span / 60_000);
    setText(this.from, span < 90_000 ? `${Math.round(span / 1000)} s ago` : `${mins} min ago`);
    const last = this.samples[this.samples.length - 1];
    this.legend.replaceChildren(
      ...names.map((name) => {
        const item = el('span', undefined, 'series');
        const swatch = el('i');
        swatch.style.background = this.lines.get(name).getAttribute('stroke');
        const v = last?.v[name];
        item.append(swatch, document.createTextNode(`${name} ${v === null || v === undefined ? '–' : `${this.format(v)}${this.unit}`}`));
        return item;
      }),
    );
  }
}

/** A round number at or above `v` for the top of the axis. */
function niceCeil(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

const throughput = new Chart('chart-throughput', { unit: '/s', format: (v) => fmt(Math.round(v)) });
const freshness = new Chart('chart-freshness', { unit: '', format: ms });

try {
  const kept = JSON.parse(sessionStorage.getItem(STORE) || '{}');
  for (const s of kept.throughput || []) throughput.push(s.t, s.v);
  for (const s of kept.freshness || []) freshness.push(s.t, s.v);
} catch {
  /* nothing kept */
}

/**
 * Adds one sample from `/v1/pipeline` (records in per second per stage, freshness p50/p99) and the page's
 * own stream rate, and redraws both charts.
 */
export function chartSample(pipeline, streamPerS) {
  const t = Date.now();
  const tp = { 'stream (this page)': streamPerS };
  for (const s of pipeline.stages) tp[`${s.stage} in`] = s.inPerS;
  throughput.push(t, tp);
  freshness.push(t, { p50: pipeline.freshness.p50Ms, p99: pipeline.freshness.p99Ms });
  throughput.draw(t);
  freshness.draw(t);
  try {
    sessionStorage.setItem(STORE, JSON.stringify({ throughput: throughput.samples, freshness: freshness.samples }));
  } catch {
    /* storage full: the history is only kept in memory */
  }
}
