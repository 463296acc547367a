import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { RUNTIME_ENV } from '../../pipelines/core/config.js';
import { CELLAR_NODE_FLAGS, REPO_ROOT } from '../../infra/local/cellar-process.js';
import {
  COMPOSE_DIR, COMPOSE_FILE, PENDING_METRICS, WORKERS, cellarMetricsIn, composeConfig, composeSuppliers, exportedMetricNames, expectedTotals, readYaml, type Row,
} from './compose-support.js';
import { parseCatalogCsv, SizeCatalog } from '../../pipelines/catalog/catalog.js';

/**
 * The compose stack (infra/compose) checked without a Docker engine: Compose itself validates the file,
 * then the facts an operator relies on are asserted on the resolved configuration; the Prometheus rules,
 * the Grafana dashboard, the supplier files and the seeds are checked against Cellar's own code.
 * test/infra/compose-stack.test.ts runs the stack itself where an engine exists.
 */

interface Service {
  image?: string;
  build?: { context: string; dockerfile?: string };
  command?: string[] | string;
  entrypoint?: string[] | string;
  environment?: Record<string, string | null>;
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[] | string; start_period?: string };
  ports?: Array<string | { target: number; published: number | string; host_ip?: string }>;
  volumes?: Array<string | { source: string; target: string; type: string }>;
  restart?: string;
  pull_policy?: string;
}

function resolved(env: Record<string, string> = {}): Record<string, Service> {
  const r = composeConfig(COMPOSE_FILE, [], env);
  if (r.status !== 0) throw new Error(`compose config failed:\n${r.stderr}`);
  return (parse(r.stdout) as { services: Record<string, Service> }).services;
}

const published = (s: Service) =>
  (s.ports ?? []).map((p) => (typeof p === 'string' ? p : `${p.host_ip ? `${p.host_ip}:` : ''}${p.published}:${p.target}`).replace(/\/tcp$/, ''));
const targets = (s: Service) => (s.volumes ?? []).map((v) => (typeof v === 'string' ? v.split(':')[1] : v.target));
const words = (x: string[] | string | undefined) => (Array.isArray(x) ? x.join(' ') : (x ?? ''));

describe('compose file', () => {
  it('is valid for Compose (`config -q`)', () => {
    const r = composeConfig(COMPOSE_FILE, ['-q']);
    expect(r.stderr, `compose config stderr:\n${r.stderr}`).not.toMatch(/error|invalid/i);
    expect(r.status, `compose config failed:\n${r.stderr}`).toBe(0);
  });

  it('a broken definition fails validation (what CI relies on)', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cellar-compose-'));
    const text = readFileSync(COMPOSE_FILE, 'utf8');
    const breakages: Array<[string, string, string, RegExp]> = [
      ['a dependency on a service that does not exist', '    setup:\n      condition: service_completed_successfully', '    no-such-service:\n      condition: service_completed_successfully', /no-such-service/],
      ['a misspelled key', '    command: ["redis-server"', '    comand: ["redis-server"', /comand/],
      ['a bad port', '127.0.0.1:${CELLAR_COMPOSE_REDIS_PORT:-16379}:6379', '127.0.0.1:${CELLAR_COMPOSE_REDIS_PORT:-16379}:redis', /port/i],
    ];
    try {
      for (const [what, from, to, message] of breakages) {
        expect(text, what).toContain(from);
        const bad = join(dir, 'docker-compose.yml');
        writeFileSync(bad, text.replace(from, to));
        const r = composeConfig(bad, ['-q']);
        expect(r.status, `${what} passed validation`).not.toBe(0);
        expect(r.stderr, what).toMatch(message);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has every service of the stack, with images pinned to versions', () => {
    const services = resolved();
    expect(Object.keys(services).sort()).toEqual(
      ['aggregator', 'connect', 'grafana', 'kafka', 'normalizer', 'postgres', 'prometheus', 'redis', 'schema-registry', 'scheduler', 'setup', 'sink-postgres', 'sink-redis', 'supplier-mysql', 'supplier-postgres'].sort(),
    );
    const built = new Map(Object.entries(services).flatMap(([name, s]) => (s.build ? [[s.image!, name] as const] : [])));
    for (const [name, s] of Object.entries(services)) {
      if (s.build) {
        expect(s.image, `${name}: built image needs a local tag`).toMatch(/:local$/);
        continue;
      }
      if (built.has(s.image!)) continue;
      expect(s.image, `${name}: image`).toMatch(/:v?\d[\w.-]*$/);
    }
    // One service builds Cellar's image (parallel builds of one tag collide); the workers never pull it.
    expect(Object.values(services).filter((s) => s.build && s.image === 'cellar:local')).toHaveLength(1);
    for (const w of WORKERS) expect(services[w], w).toMatchObject({ image: 'cellar:local', pull_policy: 'never' });
    const fromLines = [readFileSync(join(COMPOSE_DIR, 'cellar.Dockerfile'), 'utf8'), readFileSync(join(COMPOSE_DIR, 'connect', 'Dockerfile'), 'utf8')]
      .join('\n')
      .split('\n')
      .filter((l) => /^(FROM|ARG \w+_VERSION)/.test(l));
    expect(fromLines.join('\n')).not.toMatch(/:latest\b/);
    expect(fromLines.filter((l) => l.startsWith('ARG')).every((l) => /=\d/.test(l))).toBe(true);
  });

  it('gives every long-running service a health check and restarts it', () => {
    const services = resolved();
    for (const [name, s] of Object.entries(services)) {
      if (name === 'setup') continue;
      expect(s.healthcheck?.test, `${name}: healthcheck`).toBeTruthy();
      expect(s.restart, `${name}: restart`).toBe('unless-stopped');
    }
    for (const w of WORKERS) expect(words(services[w]!.healthcheck!.test)).toContain('/healthz');
  });

  it('runs migrations, schemas and connectors once before the workers start', () => {
    const services = resolved();
    const setup = services['setup']!;
    const script = words(setup.command);
    expect(script).toMatch(/cellar migrate\b.*cellar schemas register\b.*cellar connectors apply\b/);
    expect(setup.environment?.['CELLAR_CONNECT_URL']).toBe('http://connect:8083');
    for (const dep of ['postgres', 'kafka', 'schema-registry', 'connect', 'supplier-postgres', 'supplier-mysql']) {
      expect(setup.depends_on?.[dep]?.condition, `setup waits for ${dep}`).toBe('service_healthy');
    }
    for (const w of WORKERS) {
      const s = services[w]!;
      expect(s.depends_on?.['setup']?.condition, `${w} waits for setup`).toBe('service_completed_successfully');
      expect(words(s.command)).toBe(`run ${w}`);
      expect(s.environment?.['CELLAR_HTTP_PORT']).toBe('9464');
      expect(targets(s)).toContain(s.environment?.['CELLAR_SUPPLIERS_DIR']);
      // Workers of a stage are scaled with --scale: no fixed container name or host port.
      expect(s.ports ?? []).toEqual([]);
    }
  });

  it('passes Cellar processes only CELLAR_* variables that Cellar reads', () => {
    const known = new Set([...Object.values(RUNTIME_ENV), 'CELLAR_LOG_LEVEL', 'CELLAR_CONNECT_URL']);
    const services = resolved();
    for (const name of ['setup', ...WORKERS]) {
      for (const v of Object.keys(services[name]!.environment ?? {})) expect(known.has(v), `${name}: ${v}`).toBe(true);
    }
    const env = services['normalizer']!.environment!;
    expect(env['CELLAR_KAFKA_COMPAT']).toBe('standard');
    expect(env['CELLAR_KAFKA_BROKERS']).toBe('kafka:9092');
    expect(env['CELLAR_TOPIC_REPLICATION']).toBe('1');
  });

  it('publishes the operator ports on loopback, movable by CELLAR_COMPOSE_*_PORT', () => {
    const services = resolved();
    const expected: Record<string, string> = {
      kafka: '127.0.0.1:19092:9094', 'schema-registry': '127.0.0.1:18081:8081', connect: '127.0.0.1:18083:8083', postgres: '127.0.0.1:15432:5432',
      redis: '127.0.0.1:16379:6379', 'supplier-postgres': '127.0.0.1:15433:5432', 'supplier-mysql': '127.0.0.1:13306:3306',
      prometheus: '127.0.0.1:19090:9090', grafana: '127.0.0.1:13000:3000',
    };
    for (const [name, port] of Object.entries(expected)) expect(published(services[name]!), name).toContain(port);
    const moved = resolved({ CELLAR_COMPOSE_PG_PORT: '25432', CELLAR_COMPOSE_KAFKA_PORT: '29092' });
    expect(published(moved['postgres']!)).toContain('127.0.0.1:25432:5432');
    // Kafka advertises the published port, or host clients would be sent to the wrong one.
    expect(moved['kafka']!.environment?.['KAFKA_ADVERTISED_LISTENERS']).toContain('HOST://127.0.0.1:29092');
  });

  it('runs Kafka in KRaft mode and Kafka Connect with the Avro converter and the file, env and dir config providers', () => {
    const services = resolved();
    const kafka = services['kafka']!.environment!;
    expect(kafka['KAFKA_PROCESS_ROLES']).toBe('broker,controller');
    expect(kafka['KAFKA_CONTROLLER_QUORUM_VOTERS']).toBe('1@kafka:9093');
    // kafka-storage format refuses a cluster id that is not 16 bytes of base64url.
    expect(Buffer.from(kafka['CLUSTER_ID']!, 'base64url')).toHaveLength(16);
    expect(kafka['CLUSTER_ID']).toMatch(/^[A-Za-z0-9_-]{22}$/);
    const connect = services['connect']!.environment!;
    expect(connect['CONNECT_CONFIG_PROVIDERS']).toBe('file,env,dir');
    expect(connect['CONNECT_CONFIG_PROVIDERS_FILE_CLASS']).toBe('org.apache.kafka.common.config.provider.FileConfigProvider');
    expect(connect['CONNECT_CONFIG_PROVIDERS_ENV_CLASS']).toBe('org.apache.kafka.common.config.provider.EnvVarConfigProvider');
    expect(connect['CONNECT_CONFIG_PROVIDERS_DIR_CLASS']).toBe('org.apache.kafka.common.config.provider.DirectoryConfigProvider');
    expect(connect['VALUE_CONVERTER']).toBe('io.confluent.connect.avro.AvroConverter');
    expect(connect['CONNECT_VALUE_CONVERTER_SCHEMA_REGISTRY_URL']).toBe('http://schema-registry:8081');
    const dockerfile = readFileSync(join(COMPOSE_DIR, 'connect', 'Dockerfile'), 'utf8');
    expect(dockerfile).toMatch(/^FROM quay\.io\/debezium\/connect:/m);
    expect(dockerfile).toMatch(/kafka-serde-tools\/ \/kafka\/connect\/confluent-avro-converter\//);
  });

  it('configures the supplier databases for CDC: wal_level=logical, a ROW binlog with full row images', () => {
    const services = resolved();
    expect(words(services['supplier-postgres']!.command)).toContain('wal_level=logical');
    const mysql = words(services['supplier-mysql']!.command);
    for (const flag of ['--binlog-format=ROW', '--binlog-row-image=FULL', '--log-bin=', '--server-id=']) expect(mysql).toContain(flag);
    expect(services['supplier-mysql']!.image).toMatch(/^mysql:8\./);
    expect(targets(services['supplier-postgres']!)).toContain('/docker-entrypoint-initdb.d');
    expect(targets(services['supplier-mysql']!)).toContain('/docker-entrypoint-initdb.d');
  });

  it('mounts the Prometheus rules and Grafana provisioning where their configs point', () => {
    const services = resolved();
    expect(targets(services['prometheus']!)).toEqual(expect.arrayContaining(['/etc/prometheus/prometheus.yml', '/etc/prometheus/alerts.yml']));
    const prom = readYaml<{ rule_files: string[]; scrape_configs: Array<{ job_name: string; dns_sd_configs?: Array<{ names: string[]; port: number }> }> }>('prometheus', 'prometheus.yml');
    expect(prom.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
    for (const w of WORKERS) {
      const job = prom.scrape_configs.find((j) => j.job_name === `cellar-${w}`);
      expect(job?.dns_sd_configs?.[0], `scrape job for ${w}`).toMatchObject({ names: [w], port: 9464 });
    }
    expect(targets(services['grafana']!)).toEqual(expect.arrayContaining(['/etc/grafana/provisioning', '/etc/grafana/dashboards']));
    const provider = readYaml<{ providers: Array<{ options: { path: string } }> }>('grafana', 'provisioning', 'dashboards', 'cellar.yml');
    expect(provider.providers[0]!.options.path).toBe('/etc/grafana/dashboards');
    expect(services['grafana']!.environment?.['GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH']).toBe('/etc/grafana/dashboards/cellar.json');
  });

  it('make up and make down drive this compose file', () => {
    const make = readFileSync(join(REPO_ROOT, 'Makefile'), 'utf8');
    expect(make).toMatch(/^\.PHONY:.*\bup\b.*\bdown\b/m);
    expect(make).toContain('COMPOSE_FILE := infra/compose/docker-compose.yml');
    expect(make).toMatch(/^up:[\s\S]*?-f \$\(COMPOSE_FILE\) up -d --build/m);
    const dry = spawnSync('make', ['-n', 'up'], { cwd: REPO_ROOT, encoding: 'utf8' });
    expect(dry.stdout).toContain('infra/compose/docker-compose.yml up -d --build');
  });
});

describe('Cellar image', () => {
  /** Files reachable from the CLI by relative imports. */
  function importClosure(entry: string): Set<string> {
    const seen = new Set<string>();
    const todo = [entry];
    while (todo.length) {
      const file = todo.pop()!;
      if (seen.has(file)) continue;
      seen.add(file);
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'(\.{1,2}\/[^']+)'/g)) {
        const target = join(file, '..', m[1]!.replace(/\.js$/, '.ts'));
        if (existsSync(target)) todo.push(target);
      }
    }
    return seen;
  }

  it('copies every folder the CLI loads, and the build context lets them in', () => {
    const dockerfile = readFileSync(join(COMPOSE_DIR, 'cellar.Dockerfile'), 'utf8');
    const copied = [...dockerfile.matchAll(/^COPY (?!--from)(\S+)/gm)].map((m) => m[1]!);
    const ignore = readFileSync(join(COMPOSE_DIR, 'cellar.Dockerfile.dockerignore'), 'utf8');
    const files = [...importClosure(join(REPO_ROOT, 'pipelines', 'cli', 'main.ts'))].map((f) => f.slice(REPO_ROOT.length + 1));
    expect(files.length).toBeGreaterThan(20);
    for (const f of files) {
      const top = f.startsWith('infra/') ? f.split('/').slice(0, 2).join('/') : f.split('/')[0]!;
      expect(copied, `${f} is loaded by the CLI`).toContain(top);
      expect(ignore, `${top} passes the build context`).toContain(`!${top}/**`);
    }
    for (const f of ['package.json', 'package-lock.json', 'tsconfig.json']) expect(ignore).toContain(`!${f}`);
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    // The image starts Node with the flags of every other launcher (CELLAR_NODE_FLAGS), as the `cellar` bin does.
    expect(dockerfile).toContain(`exec node ${CELLAR_NODE_FLAGS.join(' ')} --import tsx /app/pipelines/cli/main.ts`);
    expect(readFileSync(join(REPO_ROOT, 'bin', 'cellar.js'), 'utf8').split('\n')[0]).toBe(`#!/usr/bin/env -S node ${CELLAR_NODE_FLAGS.join(' ')}`);
  });
});

describe('compose suppliers', () => {
  /** The rows a seed script inserts into `table`, as column → value. */
  function seedRows(script: string, table: string): Row[] {
    const text = readFileSync(join(COMPOSE_DIR, 'seed', script), 'utf8');
    const m = new RegExp(`INSERT INTO ${table.replace('.', '\\.')} \\(([^)]*)\\) VALUES([\\s\\S]*?);`).exec(text);
    if (!m) throw new Error(`${script}: no INSERT INTO ${table}`);
    const cols = m[1]!.split(',').map((c) => c.trim());
    return [...m[2]!.matchAll(/\(([^)]*)\)/g)].map((t) => {
      const vals = t[1]!.split(',').map((v) => v.trim());
      return Object.fromEntries(cols.map((c, i) => [c, /^'.*'$/.test(vals[i]!) ? vals[i]!.slice(1, -1) : Number(vals[i])]));
    });
  }

  it('load through the supplier registry and point at the stack\'s databases and secrets', () => {
    const suppliers = composeSuppliers();
    expect(suppliers.map((s) => [s.id, s.source.kind, s.topicPrefix])).toEqual([
      ['loire-estates', 'postgres', 'loire'],
      ['sonoma-direct', 'mysql', 'sonoma'],
    ]);
    const services = resolved();
    const connectEnv = services['connect']!.environment!;
    for (const s of suppliers) {
      const c = s.source.connection!;
      expect(services[c.host], `${s.id}: host ${c.host} is a service`).toBeTruthy();
      const secret = typeof c.password === 'string' ? /^\$\{(\w+)\}$/.exec(c.password)?.[1] : undefined;
      expect(secret, `${s.id}: password is an environment reference`).toBeTruthy();
      expect(connectEnv[secret!], `${s.id}: Kafka Connect has ${secret}`).toBeTruthy();
      // The database's CDC user gets the same password.
      expect(services[c.host]!.environment?.[secret!]).toBe(connectEnv[secret!]);
    }
  });

  it('every seeded row maps to a region and canonical SKU; one regional total spans both suppliers', () => {
    const rows = new Map<string, Row[]>([
      ['loire-estates', seedRows('supplier-postgres/01-erp.sh', 'public.stock_positions')],
      ['sonoma-direct', seedRows('supplier-mysql/01-inventory.sh', 'inventory.stock')],
    ]);
    expect(rows.get('loire-estates')).toHaveLength(6);
    expect(rows.get('sonoma-direct')).toHaveLength(5);
    const totals = expectedTotals(rows);
    // 55 cases of 12 from loire-estates (Nantes, Tours) + 96 bottles from sonoma-direct's London warehouse.
    expect(totals.get('eu-west|sancerre-2022')).toBe(55 * 12 + 96);
    expect(totals.get('us-west|sancerre-2022')).toBe(60);
    expect(totals.get('us-west|sonoma-cabernet-2019')).toBe(600);
    expect(totals.get('eu-central|vouvray-2021')).toBe(360);
    // The 1500 ml bottles of the same supplier code are their own canonical SKU, never added to the 750s.
    expect(totals.get('eu-west|vouvray-2021-magnum')).toBe(60);
    expect(totals.get('eu-west|vouvray-2021')).toBeUndefined();
  });

  it('the setup service imports a catalog that lists every canonical SKU of the seeded rows, at their size', () => {
    const file = join(COMPOSE_DIR, 'catalog', 'catalog.csv');
    const entries = parseCatalogCsv(readFileSync(file, 'utf8'), file);
    const catalog = new SizeCatalog(entries.map((e) => ({ ...e, origin: 'import' as const, firstSupplier: null })));
    const rows = new Map<string, Row[]>([
      ['loire-estates', seedRows('supplier-postgres/01-erp.sh', 'public.stock_positions')],
      ['sonoma-direct', seedRows('supplier-mysql/01-inventory.sh', 'inventory.stock')],
    ]);
    expectedTotals(rows, composeSuppliers(), catalog); // throws bottle_size_mismatch for a row of another size
    expect(catalog.hasPending(), 'a seeded canonical SKU is missing from the catalog').toBe(false);
    expect(catalog.sizeOf('vouvray-2021-magnum')).toBe(1500);
    expect(readYaml<{ services: Record<string, { command?: string[] }> }>('docker-compose.yml').services.setup!.command!.join(' ')).toContain('cellar catalog import /etc/cellar/catalog/catalog.csv');
  });
});

describe('alert rules', async () => {
  const rules = readYaml<{ groups: Array<{ name: string; rules: Array<{ alert: string; expr: string; for?: string; labels: Record<string, string>; annotations: Record<string, string> }> }> }>('prometheus', 'alerts.yml');
  const all = rules.groups.flatMap((g) => g.rules);
  const known = await exportedMetricNames();

  it('cover freshness SLO, dead-letter growth, failed connectors, drift and consumer lag', () => {
    expect(all.map((r) => r.alert)).toEqual(
      expect.arrayContaining(['CellarFreshnessSLOBreach', 'CellarDeadLettersGrowing', 'CellarConnectorFailed', 'CellarDriftFound', 'CellarConsumerLagHigh']),
    );
    expect(new Set(all.map((r) => r.alert)).size).toBe(all.length);
  });

  it('use only metrics Cellar exports (or the named pending ones)', () => {
    for (const r of all) {
      const names = cellarMetricsIn(r.expr);
      expect(names.length + (r.expr.includes('up{') ? 1 : 0), `${r.alert} names a metric`).toBeGreaterThan(0);
      for (const n of names) expect(known.has(n) || n in PENDING_METRICS, `${r.alert}: ${n}`).toBe(true);
    }
    // Stage and sink label values the rules select on are those the code sets.
    expect(rules.groups.map((g) => g.rules.map((r) => r.expr).join('\n')).join('\n')).toContain('cellar_freshness_seconds_bucket{le="5"}');
    expect(readFileSync(join(REPO_ROOT, 'pipelines', 'core', 'metrics.ts'), 'utf8')).toMatch(/buckets: \[[^\]]*\b5\b/);
  });

  it('each has a severity, a summary and a runbook section in docs/OPERATIONS.md', () => {
    const ops = readFileSync(join(REPO_ROOT, 'docs', 'OPERATIONS.md'), 'utf8');
    const anchors = new Set([...ops.matchAll(/^#+ (.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^a-z0-9 -]/g, '').replace(/ /g, '-')));
    for (const r of all) {
      expect(['page', 'ticket'], r.alert).toContain(r.labels.severity);
      expect(r.annotations.summary, r.alert).toBeTruthy();
      const anchor = /^docs\/OPERATIONS\.md#(.+)$/.exec(r.annotations.runbook ?? '')?.[1];
      expect(anchor && anchors.has(anchor), `${r.alert}: runbook ${r.annotations.runbook}`).toBe(true);
    }
  });

  const promtool = process.env.CELLAR_PROMTOOL ?? (spawnSync('promtool', ['--version']).status === 0 ? 'promtool' : undefined);
  if (!promtool) console.log('alert rules: promtool not installed (Debian package prometheus, or CELLAR_PROMTOOL=path): promtool checks skipped');
  it.skipIf(!promtool)(`pass promtool check rules and the rule unit tests${promtool ? '' : ' (skipped: promtool not installed)'}`, () => {
    const check = spawnSync(promtool!, ['check', 'rules', join(COMPOSE_DIR, 'prometheus', 'alerts.yml')], { encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    const unit = spawnSync(promtool!, ['test', 'rules', 'alerts.test.yml'], { cwd: join(COMPOSE_DIR, 'prometheus'), encoding: 'utf8' });
    expect(unit.status, unit.stdout + unit.stderr).toBe(0);
  });
});

describe('Grafana dashboard', async () => {
  const dashboard = JSON.parse(readFileSync(join(COMPOSE_DIR, 'grafana', 'dashboards', 'cellar.json'), 'utf8')) as {
    uid: string;
    panels: Array<{ id: number; type: string; title: string; datasource?: { uid: string }; targets?: Array<{ expr: string }>; gridPos: { x: number; y: number; w: number; h: number } }>;
  };
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  const known = await exportedMetricNames();

  it('has the panels operators need', () => {
    const titles = panels.map((p) => p.title).join('\n');
    for (const t of [/Events in per stage/, /Freshness p50 \/ p99/, /Dead letters by reason/, /Consumer lag/, /Sink batch latency/, /Reconciliation drift/]) expect(titles).toMatch(t);
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  });

  it('queries the provisioned datasource with known metrics only', () => {
    const ds = readYaml<{ datasources: Array<{ uid: string; url: string }> }>('grafana', 'provisioning', 'datasources', 'prometheus.yml').datasources[0]!;
    expect(ds.url).toBe('http://prometheus:9090');
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe(ds.uid);
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) for (const n of cellarMetricsIn(t.expr)) expect(known.has(n) || n in PENDING_METRICS, `${p.title}: ${n}`).toBe(true);
    }
    const freshness = panels.find((p) => p.title.startsWith('Freshness p50'))!.targets!.map((t) => t.expr);
    expect(freshness.some((e) => e.startsWith('histogram_quantile(0.5,') && e.includes('cellar_freshness_seconds_bucket'))).toBe(true);
    expect(freshness.some((e) => e.startsWith('histogram_quantile(0.99,') && e.includes('cellar_freshness_seconds_bucket'))).toBe(true);
  });

  it('lays panels out without overlap inside the 24-column grid', () => {
    const cells = new Set<string>();
    for (const p of dashboard.panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
        for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps at ${x},${y}`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
    }
  });
});
