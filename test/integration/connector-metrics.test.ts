import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { spawnCellar } from '../../infra/local/cellar-process.js';
import { startLocalKafkaConnect } from '../../infra/local/kafka-connect.js';
import { freePort, stopChild } from '../../infra/local/process.js';
import { REPO_ROOT } from '../../infra/local/cellar-process.js';
import { runCellar } from '../support/cli.js';
import { artifactDir, cellarEnv, eventually, freshDatabase } from '../support/services.js';

/** `cellar run scheduler` with CELLAR_CONNECT_URL exports connector and task states for the alert rules. */
describe('connector gauges (cellar run scheduler)', () => {
  it('exports cellar_connector_up and cellar_connector_task_failed from Kafka Connect, following state changes', async () => {
    const connect = await startLocalKafkaConnect();
    const db = await freshDatabase();
    const logDir = artifactDir('connector-metrics');
    const port = await freePort();
    const env = cellarEnv({
      CELLAR_PG_URL: db.url, CELLAR_CONNECT_URL: connect.url, CELLAR_SUPPLIERS_DIR: join(REPO_ROOT, 'connectors', 'suppliers', 'examples'),
      CELLAR_HTTP_PORT: String(port), CELLAR_CONNECTOR_POLL_MS: '200',
    });
    const scheduler = spawnCellar(['run', 'scheduler'], env, join(logDir, 'scheduler.log'));
    try {
      const applied = await runCellar(['connectors', 'apply'], env, logDir);
      expect(applied.code, applied.out).toBe(0);
      connect.failTask('cellar-rhone-imports', 0, 'org.apache.kafka.connect.errors.ConnectException: boom');
      connect.failConnector('cellar-cascade-wines', 'org.apache.kafka.connect.errors.ConnectException: gone');
      const metrics = () => fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text(), () => '');
      const seen = await eventually(async () => {
        const m = await metrics();
        return m.includes('cellar_connector_task_failed{connector="cellar-rhone-imports",task="0"} 1') && m.includes('cellar_connector_up{connector="cellar-cascade-wines"} 0');
      }, 30_000, 200);
      const text = await metrics();
      expect(seen, text.split('\n').filter((l) => l.startsWith('cellar_connector')).join('\n')).toBe(true);
      expect(text).toContain('cellar_connector_up{connector="cellar-rhone-imports"} 1');
      expect(text).toContain('cellar_connector_up{connector="cellar-harbor-spirits"} 1');
      expect(text).toContain('cellar_connector_task_failed{connector="cellar-harbor-spirits",task="0"} 0');
      // Restarting the failed ones is seen on the next poll.
      const restarted = await runCellar(['connectors', 'restart'], env, logDir);
      expect(restarted.code, restarted.out).toBe(0);
      expect(await eventually(async () => (await metrics()).includes('cellar_connector_task_failed{connector="cellar-rhone-imports",task="0"} 0'), 30_000, 200)).toBe(true);
    } finally {
      await stopChild(scheduler, 'SIGTERM', 15_000);
      await connect.close();
      await db.pool.end();
    }
  }, 120_000);
});
