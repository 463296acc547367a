import type { Admin, Kafka } from 'kafkajs';
import type pg from 'pg';
import type { RuntimeConfig } from '../core/config.js';
import { fromKafkaError } from '../core/errors.js';
import { sleep } from '../core/retry.js';
import { groupId } from '../kafka/topics.js';
import { refusedAgain, replaysQueued, resolveDeadLetters, type StoredDeadLetter } from '../state/dead-letters.js';

export interface ReplayOutcomeInput {
  pool: pg.Pool;
  kafka: Kafka;
  cfg: RuntimeConfig;
  /** Letters produced again to their Kafka topics, and the topic partitions written. */
  replayed: StoredDeadLetter[];
  sent: Array<{ topic: string; partition: number; stage: string }>;
  /** Letters handed back to the embedded runtime. */
  queued: StoredDeadLetter[];
  waitMs: number;
  actor: string;
  /** The newest letter's id when the replay began. */
  afterId: number;
}

/**
 * Waits until the pipeline has taken the replayed changes (the embedded runtime: their repair requests are
 * consumed in its commit; Kafka: the stage's consumer group committed past what the replay wrote), then says,
 * letter by letter, what became of them: applied (the letter is resolved), refused again (with the new
 * letter's reason and message), or not taken in time (with where to look). `ok` only when all were applied.
 */
export async function replayOutcome(i: ReplayOutcomeInput): Promise<{ ok: boolean; lines: string[] }> {
  const deadline = Date.now() + i.waitMs;
  const admin = i.sent.length ? i.kafka.admin() : undefined;
  let queuedLeft = new Set<number>();
  let topicsLeft = new Set<string>();
  try {
    await admin?.connect();
    const targets = admin ? await kafkaTargets(admin, i) : [];
    for (;;) {
      queuedLeft = await replaysQueued(i.pool, i.queued.map((l) => l.id));
      topicsLeft = new Set<string>();
      for (const t of targets) {
        const committed = (await admin!.fetchOffsets({ groupId: t.group, topics: [t.topic] })).flatMap((x) => x.partitions).find((p) => p.partition === t.partition)?.offset ?? '-1';
        if (BigInt(committed) < BigInt(t.high)) topicsLeft.add(t.topic);
      }
      if ((!queuedLeft.size && !topicsLeft.size) || Date.now() >= deadline) break;
      await sleep(500);
    }
  } catch (err) {
    throw fromKafkaError(err, 'waiting for the replayed changes');
  } finally {
    await admin?.disconnect().catch(() => undefined);
  }
  const all = [...i.replayed, ...i.queued];
  const refused = await refusedAgain(i.pool, all.map((l) => l.id), i.afterId);
  const waiting = all.filter((l) => !refused.has(l.id) && (queuedLeft.has(l.id) || (l.topic !== null && topicsLeft.has(l.topic))));
  const applied = all.filter((l) => !refused.has(l.id) && !waiting.includes(l));
  await resolveDeadLetters(i.pool, applied.map((l) => l.id), i.actor, 'replayed and applied');
  const lines: string[] = [];
  if (applied.length) lines.push(`applied ${applied.length} (${applied.map((l) => l.id).join(', ')}): resolved`);
  for (const l of all) {
    const again = refused.get(l.id);
    if (again) lines.push(`letter ${l.id} (${l.reason}) refused again as letter ${again.id}: ${again.reason}: ${again.message}`);
  }
  if (waiting.length) {
    const where = [
      ...(waiting.some((l) => queuedLeft.has(l.id)) ? ['the embedded runtime has not taken them: is `cellar run embedded` running for this database?'] : []),
      ...[...new Set(waiting.filter((l) => l.topic).map((l) => l.stage))].map((s) => `the ${groupId(i.cfg, s)} consumer group has not consumed them: are the ${s} workers running and ready?`),
    ];
    lines.push(`not applied within ${Math.round(i.waitMs / 1000)} s: ${waiting.map((l) => l.id).join(', ')}; ${where.join('; ')} (they stay "replayed"; \`cellar dlq list --status replayed\`)`);
  }
  return { ok: refused.size === 0 && waiting.length === 0, lines };
}

/** Per topic partition the replay wrote: the stage's group and the high watermark right after the write. */
async function kafkaTargets(admin: Admin, i: ReplayOutcomeInput): Promise<Array<{ topic: string; partition: number; group: string; high: string }>> {
  const out: Array<{ topic: string; partition: number; group: string; high: string }> = [];
  for (const topic of new Set(i.sent.map((s) => s.topic))) {
    const offsets = await admin.fetchTopicOffsets(topic);
    for (const s of i.sent.filter((x) => x.topic === topic)) {
      if (out.some((o) => o.topic === topic && o.partition === s.partition)) continue;
      out.push({ topic, partition: s.partition, group: groupId(i.cfg, s.stage), high: offsets.find((o) => o.partition === s.partition)?.high ?? '0' });
    }
  }
  return out;
}
