import type { DeadLetter } from '../../schemas/records.js';
import { REASONS, type ReasonCode } from '../../schemas/reasons.js';

/** The stages that dead-letter records, as `stage` of a letter and of `cellar_dead_letters_total` (`source`: a feed line that could not become a change). */
export const STAGES = ['source', 'normalizer', 'aggregator', 'sink-postgres', 'sink-redis'] as const;
export type Stage = (typeof STAGES)[number];

/** Where a dead-lettered record was: its Kafka coordinates, or its source position in the embedded runtime. */
export interface LetterOrigin {
  supplierId?: string | null;
  topic?: string | null;
  partition?: number | null;
  offset?: string | null;
  /** The change's position at its source (LSN, binlog position), or the observation's version. */
  sourcePosition?: string | null;
  /** The record's original bytes (never decoded again: replay sends them as they were). */
  key?: Buffer | string | null;
  value?: Buffer | string | null;
  /** Source table of a change the embedded runtime read (it has no topic): lets a replay route it back. */
  sourceTable?: string | null;
  /** The letter this record replays, when its replay was refused again. */
  replayOf?: number | null;
}

/** The Kafka header a replayed message carries (`cellar dlq replay`): the id of the letter it replays. */
export const REPLAY_HEADER = 'cellar-replay-of';

/** The replayed letter's id from a Kafka message's headers, or null. */
export function replayOfHeaders(headers: Record<string, unknown> | undefined): number | null {
  const h = headers?.[REPLAY_HEADER];
  const text = Buffer.isBuffer(h) ? h.toString('utf8') : typeof h === 'string' ? h : undefined;
  return text && /^\d+$/.test(text) ? Number(text) : null;
}

const bytes = (v: Buffer | string | null | undefined) => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v : Buffer.from(v));

/**
 * The one way every stage of both runtimes builds a dead letter: a typed stage and reason (the reason list
 * of the README's "Dead letters", {@link REASONS}), a message for an on-call engineer, and where the record
 * was, with absent coordinates as null. Throws on a reason outside the list: that is a defect, not data.
 */
export function deadLetter(stage: Stage, reason: ReasonCode, message: string, at: LetterOrigin, nowMs = Date.now()): DeadLetter {
  if (!(reason in REASONS)) throw new Error(`dead letter reason "${reason}" is not one of REASONS`);
  return {
    stage, reason, message,
    supplierId: at.supplierId ?? null,
    topic: at.topic ?? null,
    partition: at.partition ?? null,
    offset: at.offset ?? null,
    sourcePosition: at.sourcePosition ?? null,
    key: bytes(at.key),
    value: bytes(at.value),
    tsMs: nowMs,
    sourceTable: at.sourceTable ?? null,
    ...(at.replayOf ? { replayOf: at.replayOf } : {}),
  };
}
