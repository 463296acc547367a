import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { artifactDir } from '../support/services.js';
import { waitForOutput } from '../support/cli.js';

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/**
 * `cellar demo --kafka --keep-running` as an operator uses it: the four workers converge on the scripted
 * scenario, the demo prints what the CLI needs to reach the pipeline, a worker killed with SIGKILL is
 * started again and said so, and Ctrl-C stops every process it started, the restarted one included.
 */
describe('cellar demo --kafka', () => {
  it('converges, starts a killed worker again saying so, and stops every worker on Ctrl-C', async () => {
    const log = join(artifactDir('demo-kafka'), 'demo.log');
    const child = spawnCellar(['demo', '--kafka', '--keep-running'], { VITEST_WORKER_ID: '' }, log);
    let code: number | null | undefined;
    const exit = new Promise<number | null>((resolve) => child.once('exit', (c, signal) => resolve((code = c ?? (signal ? -1 : null)))));
    const up = await waitForOutput(log, /^Worker processes: (.*)$/m, () => code !== undefined, 170_000);
    expect(up, existsSync(log) ? readFileSync(log, 'utf8') : 'no output').toBeDefined();
    const pids = new Map([...up![1]!.matchAll(/([a-z-]+) \(pid (\d+)\)/g)].map(([, role, pid]) => [role!, Number(pid)]));
    expect([...pids.keys()].sort()).toEqual(['aggregator', 'normalizer', 'sink-postgres', 'sink-redis']);
    const out = readFileSync(log, 'utf8');
    expect(out).toContain('All regional totals equal the sum of the suppliers\' rows.');
    expect(out).toMatch(/^ {2}export CELLAR_PG_URL=postgres:\/\/\S+ CELLAR_REDIS_URL=redis:\/\/\S+ CELLAR_KAFKA_BROKERS=\S+ CELLAR_SCHEMA_REGISTRY_URL=http:\/\/\S+ CELLAR_SUPPLIERS_DIR=\S+$/m);

    process.kill(pids.get('aggregator')!, 'SIGKILL');
    const again = await waitForOutput(log, /^ {3}! aggregator worker killed by SIGKILL: started again as pid (\d+) \(its log: \S+aggregator\.log\)$/m, () => code !== undefined, 20_000);
    expect(again, readFileSync(log, 'utf8')).toBeDefined();
    const restarted = Number(again![1]);
    expect(alive(restarted)).toBe(true);
    // It joins the group again: its log says so after the restart.
    const workDir = /^Logs \(JSON\): (\S+) /m.exec(out)?.[1];
    expect(workDir).toBeDefined();
    expect(await waitForOutput(join(workDir!, 'aggregator.log'), new RegExp(`"pid":${restarted}[^\\n]*"msg":"worker started"`), () => code !== undefined, 60_000)).toBeDefined();

    child.kill('SIGINT'); // Ctrl-C
    await exit;
    const end = readFileSync(log, 'utf8');
    expect(end.match(/^ {3}! /gm), 'workers stopped by Ctrl-C are not reported as crashed').toHaveLength(1);
    for (const pid of [...pids.values(), restarted]) expect(alive(pid), `worker pid ${pid} still running after Ctrl-C`).toBe(false);
    expect(end).not.toMatch(/^\s*\{"level"/m);
  }, 240_000);
});
