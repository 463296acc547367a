import axios from 'axios';
import type { Redis } from 'ioredis';
import type pg from 'pg';
import type { CellarMetrics } from '../core/metrics.js';
import { deadLetterCounts } from '../state/dead-letters.js';
import { heldSummary, type HeldSummary } from '../state/held.js';
import { query } from '../core/pg.js';
import { histogramQuantile } from '../core/histogram.js';

/** One sample line of Prometheus text. */
export interface MetricSample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/** Parses Prometheus text exposition (the lines Cellar's registries write; comments skipped). */
export function parsePrometheusText(text: string): MetricSample[] {
  const out: MetricSample[] = [];
  const line = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/;
  const label = /([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g;
  for (const l of text.split('\n')) {
    if (!l || l.startsWith('#')) continue;
    const m = line.exec(l);
    if (!m) continue;
    const labels: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(label)) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const value = m[3] === '+Inf' ? Infinity : Number(m[3]);
    if (!Number.isNaN(value)) out.push({ name: m[1]!, labels, value });
  }
  return out;
}

interface Snapshot {
  t: number;
  eventsIn: Map<string, number>;
  eventsOut: Map<string, number>;
  /** Freshness histogram: cumulative count per upper bound (seconds), summed over sinks and processes. */
  fresh: Map<number, number>;
}

/** What the dashboard shows about the pipeline (`GET /v1/pipeline`). */
export interface PipelineHealth {
  at: number;
  /** Records per second per stage over the last sampling window, and totals. */
  stages: Array<{ stage: string; inPerS: number; outPerS: number; inTotal: number; outTotal: number }>;
  /** Consumer lag (messages) per group and topic, summed over partitions. */
  consumerLag: Array<{ group: string; topic: string; lag: number }>;
  /** Source commit → sink write, over the last minute (null without observations). */
  freshness: { p50Ms: number | null; p99Ms: number | null; count: number; windowS: number };
  deadLetters: Array<{ stage: string; reason: string; count: number; pending: number }>;
  /** Contributors held at their last valid state, per supplier and reason (see HeldStore). */
  held: HeldSummary[];
  /** Latest row of cellar.reconciliation_runs, when that table exists and has one. */
  reconciliation: Record<string, unknown> | null;
  /** Metric sources read: this process and each CELLAR_API_SCRAPE_URLS entry. */
  sources: Array<{ source: string; ok: boolean; error?: string }>;
  stores: { redis: boolean; postgres: boolean };
}

/** Quantile from cumulative histogram counts (seconds), in ms; null without observations. */
export function quantileMs(q: number, cum: Array<[number, number]>): number | null {
  const v = histogramQuantile(q, cum);
  return v === undefined ? null : Math.round(v * 1000);
}

/**
 * Samples Cellar metrics (this process' registries and the workers' /metrics URLs) every `everyMs` and
 * keeps a minute of samples, so throughput and freshness quantiles are rates over a recent window rather
 * than totals since start. Postgres facts (dead letters, the last reconciliation) are read on request.
 */
export class PipelineMonitor {
  private samples: Snapshot[] = [];
  private lag: PipelineHealth['consumerLag'] = [];
  private sources: PipelineHealth['sources'] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly registries: CellarMetrics[],
    private readonly scrapeUrls: string[],
    private readonly pool: pg.Pool,
    private readonly redis: Redis,
    private readonly everyMs = 2_000,
  ) {}

  start(): void {
    void this.sample();
    this.timer = setInterval(() => void this.sample(), this.everyMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** Takes one sample now (also used by tests). */
  async sample(): Promise<void> {
    const texts: string[] = [];
    const sources: PipelineHealth['sources'] = [];
    for (const [i, m] of this.registries.entries()) {
      texts.push(await m.registry.metrics());
      sources.push({ source: i === 0 ? 'this process' : `in-process registry ${i}`, ok: true });
    }
    await Promise.all(
      this.scrapeUrls.map(async (url) => {
        const name = new URL(url).host;
        try {
          const res = await axios.get<string>(url, { timeout: 1_500, responseType: 'text' });
          texts.push(res.data);
          sources.push({ source: name, ok: true });
        } catch (err) {
          sources.push({ source: name, ok: false, error: (err as Error).message });
        }
      }),
    );
    const snap: Snapshot = { t: Date.now(), eventsIn: new Map(), eventsOut: new Map(), fresh: new Map() };
    const lag = new Map<string, { group: string; topic: string; lag: number }>();
    const add = (m: Map<string | number, number>, k: string | number, v: number) => m.set(k, (m.get(k) ?? 0) + v);
    for (const s of texts.flatMap(parsePrometheusText)) {
      if (s.name === 'cellar_events_in_total') add(snap.eventsIn, s.labels.stage ?? '', s.value);
      else if (s.name === 'cellar_events_out_total') add(snap.eventsOut, s.labels.stage ?? '', s.value);
      else if (s.name === 'cellar_freshness_seconds_bucket') add(snap.fresh, s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value);
      else if (s.name === 'cellar_consumer_lag') {
        const k = `${s.labels.group}|${s.labels.topic}`;
        const cur = lag.get(k) ?? { group: s.labels.group ?? '', topic: s.labels.topic ?? '', lag: 0 };
        cur.lag += s.value;
        lag.set(k, cur);
      }
    }
    this.samples.push(snap);
    while (this.samples.length > 2 && snap.t - this.samples[0]!.t > 60_000) this.samples.shift();
    this.lag = [...lag.values()].sort((a, b) => a.group.localeCompare(b.group) || a.topic.localeCompare(b.topic));
    this.sources = sources;
  }

  private windowed(): Pick<PipelineHealth, 'stages' | 'freshness'> {
    const last = this.samples[this.samples.length - 1];
    if (!last) return { stages: [], freshness: { p50Ms: null, p99Ms: null, count: 0, windowS: 0 } };
    // Rates over the last ~10 s; freshness over the whole kept minute.
    const rateBase = [...this.samples].reverse().find((s) => last.t - s.t >= 9_000) ?? this.samples[0]!;
    const freshBase = this.samples[0]!;
    const dt = Math.max(0.001, (last.t - rateBase.t) / 1000);
    const stageNames = [...new Set([...last.eventsIn.keys(), ...last.eventsOut.keys()])].sort();
    const stages = stageNames.map((stage) => {
      const inTotal = last.eventsIn.get(stage) ?? 0;
      const outTotal = last.eventsOut.get(stage) ?? 0;
      const rate = (now: number, then: number | undefined) => (rateBase === last ? 0 : Math.max(0, now - (then ?? 0)) / dt);
      return { stage, inPerS: Math.round(rate(inTotal, rateBase.eventsIn.get(stage))), outPerS: Math.round(rate(outTotal, rateBase.eventsOut.get(stage))), inTotal, outTotal };
    });
    const single = freshBase === last;
    const cum = [...last.fresh.entries()].sort((a, b) => a[0] - b[0]).map(([le, c]): [number, number] => [le, Math.max(0, c - (single ? 0 : (freshBase.fresh.get(le) ?? 0)))]);
    const count = cum.length ? cum[cum.length - 1]![1] : 0;
    return { stages, freshness: { p50Ms: quantileMs(0.5, cum), p99Ms: quantileMs(0.99, cum), count, windowS: Math.round((last.t - freshBase.t) / 1000) } };
  }

  /** The current picture; Postgres and Redis are asked now (each may be down: reported, not thrown). */
  async health(): Promise<PipelineHealth> {
    let postgres = true;
    let deadLetters: PipelineHealth['deadLetters'] = [];
    let reconciliation: PipelineHealth['reconciliation'] = null;
    let held: HeldSummary[] = [];
    try {
      deadLetters = await deadLetterCounts(this.pool);
      held = await heldSummary(this.pool);
      const t = await query<{ t: string | null }>(this.pool, 'checking reconciliation table', "SELECT to_regclass('cellar.reconciliation_runs')::text AS t");
      if (t.rows[0]?.t) {
        const { rows } = await query(this.pool, 'reading the last reconciliation', 'SELECT * FROM cellar.reconciliation_runs ORDER BY started_at DESC LIMIT 1');
        // bigint columns (id, rows_compared) arrive as strings: numbers for the page.
        reconciliation = rows[0] ? Object.fromEntries(Object.entries(rows[0]).map(([k, v]) => [k, v instanceof Date ? v.toISOString() : typeof v === 'string' && /^-?\d{1,15}$/.test(v) && /(^id$|_id$|rows|keys|count)/.test(k) && k !== 'supplier_id' ? Number(v) : v])) : null;
      }
    } catch {
      postgres = false;
    }
    const redis = await this.redis.ping().then(
      () => true,
      () => false,
    );
    return { at: Date.now(), ...this.windowed(), consumerLag: this.lag, deadLetters, held, reconciliation, sources: this.sources, stores: { redis, postgres } };
  }
}
